//! The parameter table: every tensor of the model, in one place, with its shape, its offset in
//! one flat buffer and its Hugging Face name. Allocation, gradient buffers, optimizer state,
//! checkpoints and safetensors export all walk this table.

use super::ModelConfig;

/// What a parameter tensor is. Shapes are PyTorch `[out, in]`, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Token embedding `E [V, D]` (also the classifier when tied).
    Embed,
    /// Attention RMSNorm weight `[D]`.
    AttnNorm,
    /// Query projection `Wq [Q, D]`.
    Wq,
    /// Key projection `Wk [KV, D]`.
    Wk,
    /// Value projection `Wv [KV, D]`.
    Wv,
    /// Attention output projection `Wo [D, Q]`.
    Wo,
    /// FFN RMSNorm weight `[D]`.
    FfnNorm,
    /// FFN gate projection `W1 [HID, D]` (`silu(W1·x)`).
    W1,
    /// FFN down projection `W2 [D, HID]`.
    W2,
    /// FFN up projection `W3 [HID, D]`.
    W3,
    /// Final RMSNorm weight `[D]`.
    FinalNorm,
    /// Untied classifier `[V, D]` (absent when the classifier is tied).
    Classifier,
}

impl ParamKind {
    /// The kinds each transformer block has, in table order.
    pub const PER_LAYER: [ParamKind; 9] = [
        ParamKind::AttnNorm,
        ParamKind::Wq,
        ParamKind::Wk,
        ParamKind::Wv,
        ParamKind::Wo,
        ParamKind::FfnNorm,
        ParamKind::W1,
        ParamKind::W2,
        ParamKind::W3,
    ];

    /// Whether this is an RMSNorm weight (upstream applies no weight decay to these).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            ParamKind::AttnNorm | ParamKind::FfnNorm | ParamKind::FinalNorm
        )
    }

    /// The shape under `cfg`: `[rows, cols]` for matrices, `[len]` for norm weights.
    pub fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        let (d, q, kv, hid, v) = (
            cfg.dim,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.hidden_dim,
            cfg.vocab_size,
        );
        match self {
            ParamKind::Embed | ParamKind::Classifier => vec![v, d],
            ParamKind::AttnNorm | ParamKind::FfnNorm | ParamKind::FinalNorm => vec![d],
            ParamKind::Wq => vec![q, d],
            ParamKind::Wk | ParamKind::Wv => vec![kv, d],
            ParamKind::Wo => vec![d, q],
            ParamKind::W1 | ParamKind::W3 => vec![hid, d],
            ParamKind::W2 => vec![d, hid],
        }
    }

    /// Our name (llama2.c / Meta convention), e.g. `layers.3.attention.wq.weight`.
    pub fn name(self, layer: Option<usize>) -> String {
        let l = layer.unwrap_or(0);
        match self {
            ParamKind::Embed => "tok_embeddings.weight".to_string(),
            ParamKind::AttnNorm => format!("layers.{l}.attention_norm.weight"),
            ParamKind::Wq => format!("layers.{l}.attention.wq.weight"),
            ParamKind::Wk => format!("layers.{l}.attention.wk.weight"),
            ParamKind::Wv => format!("layers.{l}.attention.wv.weight"),
            ParamKind::Wo => format!("layers.{l}.attention.wo.weight"),
            ParamKind::FfnNorm => format!("layers.{l}.ffn_norm.weight"),
            ParamKind::W1 => format!("layers.{l}.feed_forward.w1.weight"),
            ParamKind::W2 => format!("layers.{l}.feed_forward.w2.weight"),
            ParamKind::W3 => format!("layers.{l}.feed_forward.w3.weight"),
            ParamKind::FinalNorm => "norm.weight".to_string(),
            ParamKind::Classifier => "output.weight".to_string(),
        }
    }

    /// The Hugging Face LLaMA name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    ///
    /// Our RoPE rotates interleaved pairs `(2i, 2i+1)` (llama2.c); Hugging Face rotates
    /// halves `(i, i+HD/2)`, so an exporter must permute the rows of `q_proj`/`k_proj`
    /// within each head.
    pub fn hf_name(self, layer: Option<usize>) -> String {
        let l = layer.unwrap_or(0);
        match self {
            ParamKind::Embed => "model.embed_tokens.weight".to_string(),
            ParamKind::AttnNorm => format!("model.layers.{l}.input_layernorm.weight"),
            ParamKind::Wq => format!("model.layers.{l}.self_attn.q_proj.weight"),
            ParamKind::Wk => format!("model.layers.{l}.self_attn.k_proj.weight"),
            ParamKind::Wv => format!("model.layers.{l}.self_attn.v_proj.weight"),
            ParamKind::Wo => format!("model.layers.{l}.self_attn.o_proj.weight"),
            ParamKind::FfnNorm => format!("model.layers.{l}.post_attention_layernorm.weight"),
            ParamKind::W1 => format!("model.layers.{l}.mlp.gate_proj.weight"),
            ParamKind::W2 => format!("model.layers.{l}.mlp.down_proj.weight"),
            ParamKind::W3 => format!("model.layers.{l}.mlp.up_proj.weight"),
            ParamKind::FinalNorm => "model.norm.weight".to_string(),
            ParamKind::Classifier => "lm_head.weight".to_string(),
        }
    }
}

/// One row of the parameter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// What the tensor is.
    pub kind: ParamKind,
    /// The transformer block it belongs to (`None` for embedding, final norm, classifier).
    pub layer: Option<usize>,
    /// Our name (see [`ParamKind::name`]).
    pub name: String,
    /// The Hugging Face LLaMA name (see [`ParamKind::hf_name`]).
    pub hf_name: String,
    /// Shape, row-major (`[out, in]` for matrices).
    pub shape: Vec<usize>,
    /// Offset in elements of this tensor in one flat buffer holding the table in order.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of elements (product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The element range of this tensor in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.numel()
    }
}

impl ModelConfig {
    /// The parameter table, in storage order: embedding; per layer attention norm, Wq, Wk,
    /// Wv, Wo, FFN norm, W1, W2, W3; final norm; classifier when untied. Offsets are
    /// contiguous, and the last row ends at [`param_count`](Self::param_count). Call on a
    /// validated config (shapes of an invalid one may overflow).
    pub fn params(&self) -> Vec<ParamSpec> {
        let mut rows = Vec::with_capacity(2 + 9 * self.n_layers + 1);
        let mut offset = 0;
        let mut push = |kind: ParamKind, layer: Option<usize>| {
            let spec = ParamSpec {
                kind,
                layer,
                name: kind.name(layer),
                hf_name: kind.hf_name(layer),
                shape: kind.shape(self),
                offset,
            };
            offset += spec.numel();
            rows.push(spec);
        };
        push(ParamKind::Embed, None);
        for l in 0..self.n_layers {
            for kind in ParamKind::PER_LAYER {
                push(kind, Some(l));
            }
        }
        push(ParamKind::FinalNorm, None);
        if !self.tied_classifier {
            push(ParamKind::Classifier, None);
        }
        rows
    }
}
