//! How both binaries print a failure: one `error:` line on stderr, each cause once.
//!
//! An error's chain often repeats itself: a wrapper whose message already formats its source
//! (`reading config file x: No such file…`) and then the source again as the next link. The
//! rule (one place, both binaries): a cause whose text is already in the line is left out.

use std::error::Error;

/// The error and its causes, `: `-joined, each cause once.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading config file nope.json: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading --config")]
    struct Wraps(#[source] Repeats);

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = Wraps(Repeats { source: io });
        assert_eq!(
            chain(&e),
            "loading --config: reading config file nope.json: No such file"
        );
    }
}
