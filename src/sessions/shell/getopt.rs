//! A small getopt for reading *other* programs' argv: which words are options, which options
//! carry a value, and which are operands.
//!
//! Each caller describes one program with a [`Spec`]; unknown options are read as flags, which
//! is the safe guess (an unknown valued option makes its value look like an operand, never the
//! other way round). It does not know any program itself and does not abbreviate long options.

/// How one program reads its options.
pub(crate) struct Spec {
    /// Short options that take a value, attached (`-ofile`) or as the next word (`-o file`).
    pub short_values: &'static str,
    /// Short options whose value is only ever attached and may be empty (`sed -i.bak`, `-i`).
    pub short_attached: &'static str,
    /// Long options that take a value as the next word when written without `=`.
    pub long_values: &'static [&'static str],
    /// The first operand ends the options and everything after it is an operand: wrappers
    /// (`timeout 5 cmd -x`) and interpreters (`python script.py -x`). Otherwise options may
    /// follow operands, as GNU tools allow (`cp a b -r`).
    pub stop_at_operand: bool,
    /// `+o`-style options exist (shells).
    pub plus: bool,
}

impl Spec {
    /// A program with flags only, operands after them.
    pub const FLAGS: Spec =
        Spec { short_values: "", short_attached: "", long_values: &[], stop_at_operand: false, plus: false };
}

/// One option as read: `-o`, `--output`, with its value when it takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opt {
    pub name: String,
    pub value: Option<String>,
}

/// The options and the operand positions (indices into the scanned slice).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub opts: Vec<Opt>,
    pub operands: Vec<usize>,
}

impl Scan {
    /// Whether any of `names` (e.g. `["-i", "--in-place"]`) was given.
    pub fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|o| names.contains(&o.name.as_str()))
    }

    /// Values given to any of `names`, in order.
    pub fn values<'s>(&'s self, names: &'s [&str]) -> impl Iterator<Item = &'s str> + 's {
        self.opts.iter().filter(|o| names.contains(&o.name.as_str())).filter_map(|o| o.value.as_deref())
    }

    /// The operand words themselves.
    pub fn operand_words<'a>(&self, args: &'a [String]) -> Vec<&'a str> {
        self.operands.iter().filter_map(|&i| args.get(i).map(String::as_str)).collect()
    }
}

/// Read `args` (without `argv[0]`) according to `spec`.
pub(crate) fn scan(args: &[String], spec: &Spec) -> Scan {
    let mut out = Scan::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            out.operands.extend(i..args.len());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, mut value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            if value.is_none() && spec.long_values.contains(&name) {
                value = args.get(i).cloned();
                i += 1;
            }
            out.opts.push(Opt { name: format!("--{name}"), value });
            continue;
        }
        let is_short = arg.len() > 1 && (arg.starts_with('-') || (spec.plus && arg.starts_with('+')));
        if is_short {
            i = short_cluster(arg, args, i, spec, &mut out.opts);
            continue;
        }
        if spec.stop_at_operand {
            out.operands.extend(i - 1..args.len());
            break;
        }
        out.operands.push(i - 1);
    }
    out
}

/// Read one cluster like `-qO-` or `-lc`; returns the index of the next unread word.
fn short_cluster(arg: &str, args: &[String], mut next: usize, spec: &Spec, opts: &mut Vec<Opt>) -> usize {
    let mut chars = arg.char_indices();
    let prefix = chars.next().map_or('-', |(_, c)| c);
    for (pos, c) in chars {
        let rest = arg.get(pos + c.len_utf8()..).unwrap_or("");
        let name = format!("{prefix}{c}");
        if spec.short_attached.contains(c) {
            let value = (!rest.is_empty()).then(|| rest.to_string());
            opts.push(Opt { name, value });
            break;
        }
        if spec.short_values.contains(c) {
            let value = if rest.is_empty() {
                next += 1;
                args.get(next - 1).cloned()
            } else {
                Some(rest.to_string())
            };
            opts.push(Opt { name, value });
            break;
        }
        opts.push(Opt { name, value: None });
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn clusters_values_and_operands() {
        let spec = Spec { short_values: "O", long_values: &["output-document"], ..Spec::FLAGS };
        let a = args(&["-qO-", "http://x", "--output-document", "f", "--tries=3"]);
        let s = scan(&a, &spec);
        assert!(s.has(&["-q"]));
        assert_eq!(s.values(&["-O", "--output-document"]).collect::<Vec<_>>(), ["-", "f"]);
        assert_eq!(s.values(&["--tries"]).collect::<Vec<_>>(), ["3"]);
        assert_eq!(s.operand_words(&a), ["http://x"]);
    }

    #[test]
    fn stop_at_operand_and_double_dash() {
        let spec = Spec { short_values: "sk", stop_at_operand: true, ..Spec::FLAGS };
        let a = args(&["-s", "KILL", "5", "cmd", "-x"]);
        assert_eq!(scan(&a, &spec).operand_words(&a), ["5", "cmd", "-x"]);
        let a = args(&["-r", "--", "-weird", "b"]);
        assert_eq!(scan(&a, &Spec::FLAGS).operand_words(&a), ["-weird", "b"]);
        // GNU order: options after operands still count.
        let a = args(&["a", "b", "-r"]);
        let s = scan(&a, &Spec::FLAGS);
        assert_eq!(s.operand_words(&a), ["a", "b"]);
        assert!(s.has(&["-r"]));
    }

    #[test]
    fn attached_only_values() {
        let spec = Spec { short_values: "ef", short_attached: "i", ..Spec::FLAGS };
        let a = args(&["-i.bak", "-i", "-ne", "p", "f"]);
        let s = scan(&a, &spec);
        let i: Vec<_> = s.opts.iter().filter(|o| o.name == "-i").map(|o| o.value.clone()).collect();
        assert_eq!(i, [Some(".bak".to_string()), None]);
        assert_eq!(s.values(&["-e"]).collect::<Vec<_>>(), ["p"]);
        assert_eq!(s.operand_words(&a), ["f"]);
    }

    #[test]
    fn missing_value_at_the_end_is_none() {
        let spec = Spec { short_values: "o", long_values: &["out"], ..Spec::FLAGS };
        let s = scan(&args(&["-o"]), &spec);
        assert_eq!(s.opts, [Opt { name: "-o".into(), value: None }]);
        let s = scan(&args(&["--out"]), &spec);
        assert_eq!(s.opts, [Opt { name: "--out".into(), value: None }]);
    }
}
