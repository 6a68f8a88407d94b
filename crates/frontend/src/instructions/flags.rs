//! Typed `--flag` parsing for one instruction: known names, value kinds, did-you-mean.

use crate::diagnostic::Diagnostic;
use crate::syntax::Word;

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--link`, `--link=true`, `--link=false` (case-insensitive).
    Bool,
    /// `--from=x`; at most once.
    String,
    /// `--mount=...`; may repeat.
    Strings,
}

/// A flag's value as given.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Bool(bool),
    Text(Word),
}

/// The flags given to one instruction, checked against what it accepts.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: Vec<(&'static str, Value)>,
}

impl Flags {
    /// Checks `given` against `spec` (`(name without --, kind)`). Errors name the flag and
    /// suggest a close known name.
    pub fn parse(
        keyword: &str,
        given: &[Word],
        spec: &[(&'static str, Kind)],
    ) -> Result<Flags, Diagnostic> {
        let mut flags = Flags::default();
        for word in given {
            let text = word.value.as_str();
            let body = text.strip_prefix("--").unwrap_or(text);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(known, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(unknown_flag(keyword, name, word, spec));
            };
            if kind != Kind::Strings && flags.values.iter().any(|(n, _)| *n == known) {
                return Err(Diagnostic::error(
                    format!("duplicate flag specified: --{known}"),
                    word.span,
                )
                .with_help(format!("give --{known} only once")));
            }
            let parsed = match (kind, value) {
                (Kind::Bool, None) => Value::Bool(true),
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "" => return Err(missing_value(known, word)),
                    _ => {
                        return Err(Diagnostic::error(
                            format!("expecting boolean value for flag --{known}, not: {v}"),
                            word.span,
                        )
                        .with_help(format!("use --{known}, --{known}=true or --{known}=false")));
                    }
                },
                (_, None) => return Err(missing_value(known, word)),
                (_, Some(v)) => Value::Text(Word {
                    value: v.to_string(),
                    span: word.span,
                }),
            };
            flags.values.push((known, parsed));
        }
        Ok(flags)
    }

    /// The value of a string flag, if given.
    pub fn string(&self, name: &str) -> Option<Word> {
        self.values.iter().find_map(|(n, v)| match v {
            Value::Text(w) if *n == name => Some(w.clone()),
            _ => None,
        })
    }

    /// All values of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> Vec<Word> {
        self.values
            .iter()
            .filter_map(|(n, v)| match v {
                Value::Text(w) if *n == name => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    /// A boolean flag's value, `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.values.iter().find_map(|(n, v)| match v {
            Value::Bool(b) if *n == name => Some(*b),
            _ => None,
        })
    }
}

fn missing_value(name: &str, word: &Word) -> Diagnostic {
    Diagnostic::error(format!("missing a value on flag: --{name}"), word.span)
        .with_help(format!("write it as --{name}=<value>"))
}

fn unknown_flag(
    keyword: &str,
    name: &str,
    word: &Word,
    spec: &[(&'static str, Kind)],
) -> Diagnostic {
    let d = Diagnostic::error(format!("unknown flag: --{name}"), word.span);
    let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
    if let Some(best) = did_you_mean(name, &names) {
        return d.with_help(format!("did you mean --{best}?"));
    }
    if names.is_empty() {
        return d.with_note(format!("{keyword} takes no flags"));
    }
    let list: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
    d.with_note(format!("{keyword} accepts {}", list.join(", ")))
}

/// The closest of `options` to `given`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'o>(given: &str, options: &[&'o str]) -> Option<&'o str> {
    let given = given.to_ascii_lowercase();
    options
        .iter()
        .map(|o| (strsim::osa_distance(&given, &o.to_ascii_lowercase()), *o))
        .filter(|&(d, o)| d > 0 && d <= 2.max(o.len() / 3) && d < given.len().max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggestions() {
        let all = ["RUN", "COPY", "ADD", "FROM", "WORKDIR"];
        assert_eq!(did_you_mean("RUNN", &all), Some("RUN"));
        assert_eq!(did_you_mean("cpoy", &all), Some("COPY"));
        assert_eq!(did_you_mean("WORKDIRR", &all), Some("WORKDIR"));
        assert_eq!(did_you_mean("HELLO", &all), None);
        assert_eq!(did_you_mean("X", &all), None);
    }
}
