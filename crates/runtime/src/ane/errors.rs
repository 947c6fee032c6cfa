//! Mapping what the framework reports into typed runtime errors (reference §1.5).

use super::backend::SysError;
use crate::error::Error;

/// `ANEProgramProcessRequestDirect() Failed with status=0x1d : Program Inference error`.
pub const STATUS_PROGRAM_INFERENCE: i64 = 0x1d;

/// The hardware status a failure names: its code, or `status=0x..` in its message.
pub fn status_of(code: Option<i64>, message: &str) -> Option<i64> {
    if code == Some(STATUS_PROGRAM_INFERENCE) {
        return code;
    }
    let rest = &message[message.find("status=0x")? + "status=0x".len()..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    i64::from_str_radix(&hex, 16).ok()
}

/// Maps a failure at `stage` (`compile`, `load`, `eval`, ...) to an [`Error`]: a missing
/// class or selector is [`Error::Unavailable`]; everything else is [`Error::Device`] with the
/// framework's message and, where the message is a known one, what it means.
pub fn to_error(stage: &'static str, e: SysError) -> Error {
    match e {
        SysError::Missing(m) => Error::Unavailable(m),
        SysError::Failed { code, message } => {
            let hint = hint(stage, code, &message);
            Error::Device {
                stage,
                detail: match hint {
                    Some(h) => format!("{message} — {h}"),
                    None => message,
                },
            }
        }
    }
}

fn hint(stage: &str, code: Option<i64>, message: &str) -> Option<String> {
    if status_of(code, message) == Some(STATUS_PROGRAM_INFERENCE) {
        return Some(format!(
            "status 0x1d (Program Inference error): the Neural Engine rejected the request. \
             Its known causes are ANE rules 1-3 (every surface >= 48 KiB, all inputs of one \
             allocation size, all outputs of one allocation size); this driver checks those \
             before {stage}, so this request breaks a limit not yet documented — report the \
             kernel's MIL and surface sizes"
        ));
    }
    if message.contains("ANECCompile() FAILED") {
        return Some(
            "the Neural Engine compiler rejected the program: look for an unsupported op \
             (rule 7), a missing epsilon (rule 8) or a dimension limit (rule 10); if this \
             follows ~100 compiles in one process it is the compiler leak (rule 11): \
             checkpoint and restart"
                .into(),
        );
    }
    if message.contains("InvalidMILProgram") {
        return Some(
            "the MIL text was rejected; check it with `ane-train mil fmt` and the dialect \
             (program(1.0)/ios16 on M1/M2, rule 15)"
                .into(),
        );
    }
    if stage == "load" {
        return Some("the model compiled but did not load (retried once after 100 ms)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_from_code_or_message() {
        assert_eq!(status_of(Some(0x1d), ""), Some(0x1d));
        assert_eq!(
            status_of(
                None,
                "ANEProgramProcessRequestDirect() Failed with status=0x1d : Program Inference error"
            ),
            Some(0x1d)
        );
        assert_eq!(
            status_of(Some(15), "ANEProgramChainingPrepare() Failed"),
            None
        );
    }

    #[test]
    fn missing_is_unavailable_and_0x1d_names_the_rules() {
        assert!(matches!(
            to_error("eval", SysError::Missing("no class".into())),
            Error::Unavailable(_)
        ));
        let e = to_error(
            "eval",
            SysError::Failed {
                code: Some(0x1d),
                message: "Program Inference error".into(),
            },
        );
        let Error::Device { stage, detail } = e else {
            panic!("not a device error")
        };
        assert_eq!(stage, "eval");
        assert!(detail.contains("rules 1-3"), "{detail}");
    }
}
