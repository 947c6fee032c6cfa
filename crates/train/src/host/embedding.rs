//! Token embedding: gather rows of `E [V, D]` into channel-first activations, and the
//! scatter-add backward.

use super::{check_len, HostError};

/// Checks every id of `tokens` is below `vocab`.
pub(crate) fn check_ids(what: &'static str, tokens: &[u32], vocab: usize) -> Result<(), HostError> {
    match tokens
        .iter()
        .enumerate()
        .find(|(_, &t)| usize::try_from(t).map_or(true, |t| t >= vocab))
    {
        Some((index, &token)) => Err(HostError::TokenOutOfRange {
            what,
            index,
            token,
            vocab,
        }),
        None => Ok(()),
    }
}

/// `x[d, s] = embed[tokens[s], d]`.
///
/// - out: `x [D, S]` (overwritten), `S = tokens.len()`;
/// - in: `tokens [S]` (each `< V`, else [`HostError::TokenOutOfRange`]), `embed [V, D]`.
pub fn embedding_forward(
    x: &mut [f32],
    tokens: &[u32],
    embed: &[f32],
    vocab: usize,
    dim: usize,
) -> Result<(), HostError> {
    let seq = tokens.len();
    check_len("x", x.len(), &[dim, seq])?;
    check_len("embed", embed.len(), &[vocab, dim])?;
    check_ids("tokens", tokens, vocab)?;
    for (s, &t) in tokens.iter().enumerate() {
        let row = &embed[t as usize * dim..][..dim];
        for (d, &e) in row.iter().enumerate() {
            x[d * seq + s] = e;
        }
    }
    Ok(())
}

/// `dembed[tokens[s], d] += dx[d, s]` (scatter-add; repeated tokens sum).
///
/// - out: `dembed [V, D]` (accumulated);
/// - in: `tokens [S]` (each `< V`), `dx [D, S]`.
pub fn embedding_backward(
    dembed: &mut [f32],
    tokens: &[u32],
    dx: &[f32],
    vocab: usize,
    dim: usize,
) -> Result<(), HostError> {
    let seq = tokens.len();
    check_len("dembed", dembed.len(), &[vocab, dim])?;
    check_len("dx", dx.len(), &[dim, seq])?;
    check_ids("tokens", tokens, vocab)?;
    for (s, &t) in tokens.iter().enumerate() {
        let row = &mut dembed[t as usize * dim..][..dim];
        for (d, g) in row.iter_mut().enumerate() {
            *g += dx[d * seq + s];
        }
    }
    Ok(())
}
