//! Rules for programs that talk to the network: fetchers (`curl`, `wget`, …), `ssh`/`scp`/
//! `rsync`/`sftp`/`mosh`/`sshfs`, `nc`/`telnet`, and running a file a fetcher downloaded.

use super::super::getopt::{self, Spec};
use super::super::net::{self, Url};
use super::super::paths::resolve_in;
use super::super::programs::{family, FETCH};
use super::{is_code_runner, Collector, EXEC};

impl Collector {
    /// URLs (also without a scheme: curl and wget assume HTTP), output files as writes, uploads
    /// and `@file` data as paths.
    pub(super) fn fetcher(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        let s = match program {
            "curl" => getopt::scan(args, &CURL),
            "wget" => getopt::scan(args, &WGET),
            _ => getopt::scan(args, &Spec { short_values: "odPU", ..Spec::FLAGS }),
        };
        let mut urls: Vec<Url> = Vec::new();
        for w in s.operand_words(args).into_iter().chain(s.values(&["--url"])) {
            // Scheme URLs were already found in every word; this adds curl's `host/path` form.
            urls.extend(net::schemeless_url(w));
            urls.extend(net::find_urls(w).into_iter().take(1));
        }
        for u in &urls {
            self.add_url(u.clone());
        }
        let mut written = Vec::new();
        match program {
            "curl" => {
                written.extend(
                    s.values(&["-o", "--output", "-c", "--cookie-jar", "-D", "--dump-header"])
                        .map(String::from),
                );
                if s.has(&["-O", "--remote-name", "--remote-name-all"]) {
                    let dir = s.values(&["--output-dir"]).last();
                    written.extend(urls.iter().filter_map(|u| remote_name(&u.url, dir)));
                }
                for f in s.values(&["-T", "--upload-file", "-K", "--config"]) {
                    self.path(f, cwd);
                }
                let data = ["-d", "--data", "--data-binary", "--data-urlencode", "-F", "--form", "--json"];
                for v in s.values(&data) {
                    if let Some(f) = v.split_once('@').map(|(_, f)| f.split(';').next().unwrap_or(f)) {
                        self.path(f, cwd);
                    }
                }
            }
            "wget" => {
                let out: Vec<&str> = s.values(&["-O", "--output-document"]).collect();
                written.extend(out.iter().map(|f| f.to_string()));
                written.extend(
                    s.values(&["-o", "--output-file", "-a", "--append-output", "--save-cookies"])
                        .map(String::from),
                );
                if out.is_empty() {
                    let dir = s.values(&["-P", "--directory-prefix"]).last();
                    written.extend(
                        urls.iter().filter_map(|u| remote_name(&u.url, dir).or_else(|| index_html(dir))),
                    );
                }
                for f in s.values(&["-i", "--input-file", "--post-file", "--body-file", "--load-cookies"]) {
                    self.path(f, cwd);
                }
            }
            _ => written.extend(s.values(&["-o"]).map(String::from)),
        }
        for w in written.iter().filter(|w| *w != "-") {
            self.write(w, cwd);
            self.fetched.insert(resolve_in(w, cwd));
        }
    }

    /// `sh f`, `python f`, `./f` after a fetcher wrote `f` earlier in the same command string.
    pub(super) fn fetched_file_run(
        &mut self,
        argv0: &str,
        program: &str,
        args: &[String],
        cwd: Option<&str>,
    ) {
        if self.fetched.is_empty() {
            return;
        }
        let runs = |p: &str| self.fetched.contains(&resolve_in(p, cwd));
        let class = match family(program) {
            Some(f) if is_code_runner(f) && args.iter().any(|a| !a.starts_with('-') && runs(a)) => f,
            _ if argv0.contains('/') && runs(argv0) => EXEC,
            _ => return,
        };
        self.f.pipes.push(vec![FETCH.to_string(), class.to_string()]);
    }

    /// `ssh`-like tools name a destination host; `scp`/`rsync`/`sshfs` mix remote operands
    /// (hosts) with local ones (paths; the last operand is written).
    pub(super) fn remote(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        match program {
            "ssh" | "mosh" | "sftp" => {
                let spec = Spec {
                    short_values: "BbcDEeFIiJLlmOoPpQRSWw",
                    long_values: &["ssh", "port"],
                    stop_at_operand: true,
                    ..Spec::FLAGS
                };
                let s = getopt::scan(args, &spec);
                for jump in s.values(&["-J"]) {
                    for j in jump.split(',') {
                        self.host(net::destination_host(j));
                    }
                }
                // Only the destination: what follows is a remote command, run elsewhere.
                if let Some(dest) = s.operand_words(args).first() {
                    self.host(net::destination_host(dest));
                }
                for f in s.values(&["-i", "-F"]) {
                    self.path(f, cwd);
                }
            }
            _ => {
                let spec = match program {
                    "rsync" => Spec {
                        short_values: "eBfMT",
                        long_values: &[
                            "rsh",
                            "rsync-path",
                            "exclude",
                            "include",
                            "filter",
                            "temp-dir",
                            "port",
                        ],
                        ..Spec::FLAGS
                    },
                    _ => Spec { short_values: "cFiJloPSDX", ..Spec::FLAGS },
                };
                let s = getopt::scan(args, &spec);
                let operands = s.operand_words(args);
                let last = operands.len().saturating_sub(1);
                for (n, w) in operands.iter().enumerate() {
                    match net::remote_operand_host(w, false) {
                        Some(h) => self.host(Some(h)),
                        // The last operand is the destination (`sshfs host:dir mountpoint` too).
                        None if n == last && n > 0 => self.write(w, cwd),
                        None => self.path(w, cwd),
                    }
                }
            }
        }
    }

    /// The first operand that is not a port number is the host.
    pub(super) fn netcat(&mut self, args: &[String]) {
        let s = getopt::scan(args, &Spec { short_values: "cegGiIOpqsTwWxX", ..Spec::FLAGS });
        let host = s
            .operand_words(args)
            .into_iter()
            .find(|w| !w.bytes().all(|b| b.is_ascii_digit()))
            .and_then(net::normalize_host);
        self.host(host);
    }
}

const CURL: Spec = Spec {
    short_values: "AbcCdDeEFHKmoPQrTtUuwXxYyz",
    short_attached: "",
    long_values: &[
        "output",
        "output-dir",
        "upload-file",
        "data",
        "data-ascii",
        "data-binary",
        "data-raw",
        "data-urlencode",
        "form",
        "form-string",
        "header",
        "request",
        "user",
        "user-agent",
        "referer",
        "cookie",
        "cookie-jar",
        "config",
        "url",
        "proxy",
        "max-time",
        "connect-timeout",
        "retry",
        "retry-delay",
        "cacert",
        "cert",
        "key",
        "resolve",
        "connect-to",
        "write-out",
        "range",
        "dump-header",
        "limit-rate",
        "interface",
        "json",
        "oauth2-bearer",
        "proto",
        "unix-socket",
    ],
    stop_at_operand: false,
    plus: false,
};

const WGET: Spec = Spec {
    short_values: "OoaPiUeTtwQlARDBIX",
    short_attached: "",
    long_values: &[
        "output-document",
        "output-file",
        "append-output",
        "directory-prefix",
        "input-file",
        "user-agent",
        "execute",
        "timeout",
        "tries",
        "wait",
        "header",
        "post-data",
        "post-file",
        "body-data",
        "body-file",
        "method",
        "user",
        "password",
        "load-cookies",
        "save-cookies",
        "referer",
        "accept",
        "reject",
        "domains",
    ],
    stop_at_operand: false,
    plus: false,
};

/// The file `curl -O`/`wget` saves a URL to: its last path segment, in `dir` if given.
fn remote_name(url: &str, dir: Option<&str>) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.split_once('/').map(|(_, p)| p)?;
    let path = path.split('?').next().unwrap_or(path);
    let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
    Some(match dir {
        Some(d) => format!("{d}/{name}"),
        None => name.to_string(),
    })
}

fn index_html(dir: Option<&str>) -> Option<String> {
    Some(match dir {
        Some(d) => format!("{d}/index.html"),
        None => "index.html".to_string(),
    })
}
