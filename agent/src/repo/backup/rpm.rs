//! A way back for an rpm package the repositories no longer offer: the
//! installed package rebuilt from rpm's own database with `rpmbuild`, as
//! rpmrebuild does.
//!
//! [`rebuild`] reads the installed header in one `rpm --query` and writes a
//! spec of exactly what is installed:
//!
//! - the identity (name, epoch, version, release, arch), summary, licence,
//!   URL and description;
//! - its dependencies as recorded (`Provides`, `Requires`, `Conflicts`,
//!   `Obsoletes`, with `AutoReqProv: no` so nothing is added or lost), less
//!   `rpmlib(…)`, which rpmbuild writes itself;
//! - its scriptlets (`%pre`, `%post`, `%preun`, `%postun`, `%pretrans`,
//!   `%posttrans`) with their interpreters;
//! - its files, each with the owner and group the database records, the
//!   mode it has on disk, and its kind: `%dir`, `%config`
//!   (`noreplace`, `missingok`), `%ghost`, `%doc`, `%license`.
//!
//! The files are copied from the root into a private build tree (a ghost
//! is packed whether or not it exists, as rpm packs it), and rpmbuild packs
//! that tree as it is: no build scripts, no strip, no compression of man
//! pages, no debug package, nothing computed.
//!
//! The package is kept as `DIR/NAME-VERSION-RELEASE.ARCH.rpm`, the name
//! rpm itself gives it. It is unsigned: what vouches for it is the sha256
//! the agent journals, checked again before it is installed.
//!
//! Refused, so that the caller reports "no way back" rather than restoring
//! something else: a name installed in several versions (an install-only
//! kernel), triggers or file triggers (rpmbuild cannot be given them back
//! as they were compiled), and text the spec cannot carry over literally:
//! a path with a quote, a backslash, a glob or macro character or a control
//! character, a line of a scriptlet or description that starts with `%`
//! (a spec section), or a field holding the query's separators.
//!
//! The caller keeps rpm from running meanwhile (it holds rpm's transaction
//! lock); the database is read as `rpm --query` reads it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{
    Backup, BackupError, Listed, Owners, QUERY_TIMEOUT, TOOL_TIMEOUT, WorkDir, capture, check_word, copy_files,
    create_private_dir, flag, keep, parse_verify,
};
use crate::cache::io_error;
use crate::install::process::ProcessExit;
use crate::install::rpm::RpmRoot;

/// The scriptlets a spec can carry, by their tag and their spec section.
const SCRIPTS: [(&str, &str); 6] = [
    ("PREIN", "%pre"),
    ("POSTIN", "%post"),
    ("PREUN", "%preun"),
    ("POSTUN", "%postun"),
    ("PRETRANS", "%pretrans"),
    ("POSTTRANS", "%posttrans"),
];

/// Between the fields of one query's answer (`\f`), and after each
/// installed instance (`\v`): characters no header field has any use for.
const FIELD: char = '\u{c}';
const RECORD: char = '\u{b}';

/// rpm's file flags (`rpmfileAttrs`) a spec can express.
const CONFIG: u32 = 1 << 0;
const DOC: u32 = 1 << 1;
const MISSINGOK: u32 = 1 << 3;
const NOREPLACE: u32 = 1 << 4;
const GHOST: u32 = 1 << 6;
const LICENSE: u32 = 1 << 7;

/// The installed header, as the spec needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    name: String,
    epoch: Option<String>,
    version: String,
    release: String,
    arch: String,
    summary: String,
    license: String,
    url: Option<String>,
    description: String,
    has_triggers: bool,
    provides: Vec<String>,
    requires: Vec<String>,
    conflicts: Vec<String>,
    obsoletes: Vec<String>,
    scripts: Vec<Script>,
    files: Vec<PackageFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Script {
    section: &'static str,
    /// The interpreter and its arguments; `/bin/sh` when the header names
    /// none.
    program: Vec<String>,
    body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PackageFile {
    path: String,
    /// As the database records it, type bits included.
    mode: u32,
    is_dir: bool,
    user: String,
    group: String,
    flags: u32,
}

impl Header {
    /// `[EPOCH:]VERSION-RELEASE`, as the inventory spells it.
    fn evr(&self) -> String {
        match &self.epoch {
            Some(epoch) => format!("{epoch}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }
}

/// Rebuilds installed package `name` (architecture `arch`, rpm's word) from
/// the rpm database of `root` into `dir` (created, 0700) as
/// `NAME-VERSION-RELEASE.ARCH.rpm`, replacing a file of that name.
pub fn rebuild(root: &RpmRoot, name: &str, arch: &str, dir: &Path) -> Result<Backup, BackupError> {
    check_word("package name", name, "+-._")?;
    check_word("architecture", arch, "_")?;
    create_private_dir(dir)?;
    let work = WorkDir::create(dir, name, arch)?;
    let package = format!("{name}.{arch}");
    let header = installed_header(root, &package, &work.path)?;
    check_word("version", &header.evr(), "+-.~^_:")?;
    let tree = work.path.join("tree");
    let listed: Vec<Listed> =
        header.files.iter().map(|f| Listed { path: PathBuf::from(&f.path), source: PathBuf::from(&f.path) }).collect();
    // The spec names owners itself (`%attr`): the copies' owners mean nothing.
    let absent = copy_files(root.root(), &listed, &tree, Owners::RootOnly)?;
    let missing: Vec<PathBuf> = absent.iter().filter(|p| !is_ghost(&header, p)).cloned().collect();
    let spec =
        spec_text(&header, &missing).map_err(|why| BackupError::Unsupported { package: package.clone(), why })?;
    let spec_path = work.path.join("backup.spec");
    std::fs::write(&spec_path, spec).map_err(io_error("failed to write", &spec_path))?;
    let modified = modified_files(root, &package, &work.path)?;
    let built = build(&spec_path, &tree, &work.path, &header.arch)?;
    let file = format!("{}-{}-{}.{}.rpm", header.name, header.version, header.release, header.arch);
    let target = dir.join(file);
    let (sha256, size) = keep(&built, &target, dir)?;
    let version = header.evr();
    Ok(Backup { path: target, sha256, size, name: name.into(), arch: arch.into(), version, modified, missing })
}

fn is_ghost(header: &Header, path: &Path) -> bool {
    header.files.iter().any(|f| Path::new(&f.path) == path && f.flags & GHOST != 0)
}

/// The query format of [`installed_header`]: one field per [`FIELD`], one
/// installed instance per [`RECORD`].
fn query_format() -> String {
    let mut format = String::from(
        "%{NAME}\\f%|EPOCH?{%{EPOCH}}|\\f%{VERSION}\\f%{RELEASE}\\f%{ARCH}\\f%|SUMMARY?{%{SUMMARY}}|\\f\
         %|LICENSE?{%{LICENSE}}|\\f%|URL?{%{URL}}|\\f%|DESCRIPTION?{%{DESCRIPTION}}|\\f\
         %|TRIGGERSCRIPTS?{t}|%|FILETRIGGERSCRIPTS?{f}|%|TRANSFILETRIGGERSCRIPTS?{x}|\\f\
         [%{PROVIDENEVRS}\\n]\\f[%{REQUIRENEVRS}\\n]\\f[%{CONFLICTNEVRS}\\n]\\f[%{OBSOLETENEVRS}\\n]\\f",
    );
    for (tag, _) in SCRIPTS {
        let _ = write!(format, "%|{tag}?{{y}}|\\f[%{{{tag}PROG}}\\n]\\f%|{tag}?{{%{{{tag}}}}}|\\f");
    }
    format.push_str("[%{FILENAMES}\\t%{FILEMODES:octal}\\t%{FILEUSERNAME}\\t%{FILEGROUPNAME}\\t%{FILEFLAGS}\\n]\\v");
    format
}

/// The one installed instance of `package` (`NAME.ARCH`).
fn installed_header(root: &RpmRoot, package: &str, work: &Path) -> Result<Header, BackupError> {
    let mut argv = root.rpm_argv();
    argv.extend(["--query".into(), "--queryformat".into(), query_format().into(), package.into()]);
    let out = capture(&argv, work, QUERY_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.exit {
        ProcessExit::Code(0) => {}
        ProcessExit::Code(1) if stdout.contains("is not installed") => {
            return Err(BackupError::NotInstalled { package: package.into() });
        }
        exit => return Err(out.failure(&argv, exit)),
    }
    let unsupported = |why: String| BackupError::Unsupported { package: package.into(), why };
    let records: Vec<&str> = stdout.split_terminator(RECORD).collect();
    match records.as_slice() {
        [record] => parse_header(record).map_err(unsupported),
        _ => Err(unsupported(format!("{} versions of it are installed", records.len()))),
    }
}

/// One record of [`query_format`]'s answer.
fn parse_header(record: &str) -> Result<Header, String> {
    let fields: Vec<&str> = record.split(FIELD).collect();
    let expected = 14 + 3 * SCRIPTS.len() + 1;
    if fields.len() != expected {
        return Err(format!("its header holds rpm's query separators ({} fields, not {expected})", fields.len()));
    }
    let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
    let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let mut scripts = Vec::new();
    for (index, (_, section)) in SCRIPTS.iter().enumerate() {
        let at = 14 + 3 * index;
        if fields[at] == "y" {
            let program = lines(fields[at + 1]);
            let program = if program.is_empty() { vec!["/bin/sh".to_owned()] } else { program };
            scripts.push(Script { section, program, body: fields[at + 2].to_owned() });
        }
    }
    Ok(Header {
        name: fields[0].to_owned(),
        epoch: optional(fields[1]),
        version: fields[2].to_owned(),
        release: fields[3].to_owned(),
        arch: fields[4].to_owned(),
        summary: fields[5].to_owned(),
        license: fields[6].to_owned(),
        url: optional(fields[7]),
        description: fields[8].to_owned(),
        has_triggers: !fields[9].is_empty(),
        provides: lines(fields[10]),
        requires: lines(fields[11]),
        conflicts: lines(fields[12]),
        obsoletes: lines(fields[13]),
        scripts,
        files: parse_files(fields[expected - 1])?,
    })
}

/// `PATH\tMODE\tUSER\tGROUP\tFLAGS` lines.
fn parse_files(text: &str) -> Result<Vec<PackageFile>, String> {
    let mut files = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        let [path, mode, user, group, flags] = parts.as_slice() else {
            return Err(format!("a file line of its header does not read as five fields: {line:?}"));
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| format!("file mode {mode:?} of {path}"))?;
        let flags = flags.parse::<u32>().map_err(|_| format!("file flags {flags:?} of {path}"))?;
        let is_dir = mode & 0o170000 == 0o040000;
        files.push(PackageFile {
            path: (*path).into(),
            mode,
            is_dir,
            user: (*user).into(),
            group: (*group).into(),
            flags,
        });
    }
    Ok(files)
}

/// The spec of `header`, its `missing` files left out.
fn spec_text(header: &Header, missing: &[PathBuf]) -> Result<String, String> {
    if header.has_triggers {
        return Err("it has triggers, which a spec cannot give back as they were built".into());
    }
    let mut spec = preamble(header)?;
    spec.push_str("\n%description\n");
    spec.push_str(&text_block("its description", &header.description)?);
    for script in &header.scripts {
        spec.push_str(&scriptlet(script)?);
    }
    spec.push_str("\n%files\n");
    for file in header.files.iter().filter(|f| !missing.iter().any(|m| m == Path::new(&f.path))) {
        spec.push_str(&file_line(file)?);
    }
    Ok(spec)
}

/// The tags of the spec, dependencies included.
fn preamble(header: &Header) -> Result<String, String> {
    let mut spec = String::new();
    let mut tag = |name: &str, value: &str| -> Result<(), String> {
        let value = one_line(name, value)?;
        let _ = writeln!(spec, "{name}: {value}");
        Ok(())
    };
    tag("Name", &header.name)?;
    if let Some(epoch) = &header.epoch {
        tag("Epoch", epoch)?;
    }
    tag("Version", &header.version)?;
    tag("Release", &header.release)?;
    let summary = if header.summary.is_empty() { header.name.as_str() } else { header.summary.as_str() };
    tag("Summary", summary)?;
    tag("License", if header.license.is_empty() { "unknown" } else { header.license.as_str() })?;
    if let Some(url) = &header.url {
        tag("URL", url)?;
    }
    if header.arch == "noarch" {
        tag("BuildArch", "noarch")?;
    }
    tag("AutoReqProv", "no")?;
    let own = format!("{} = {}", header.name, header.evr());
    for provide in header.provides.iter().filter(|p| **p != own) {
        tag("Provides", provide)?;
    }
    for require in header.requires.iter().filter(|r| !r.starts_with("rpmlib(")) {
        tag("Requires", require)?;
    }
    for conflict in &header.conflicts {
        tag("Conflicts", conflict)?;
    }
    for obsolete in &header.obsoletes {
        tag("Obsoletes", obsolete)?;
    }
    Ok(spec)
}

/// A tag's value, `%` escaped; a value on several lines is refused.
fn one_line(name: &str, value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err(format!("its {name} spans several lines"));
    }
    Ok(value.replace('%', "%%"))
}

/// A description or a scriptlet body, `%` escaped, ending with a newline.
/// A line starting with `%` would still open a section after the escape.
fn text_block(what: &str, text: &str) -> Result<String, String> {
    if text.lines().any(|l| l.trim_start().starts_with('%')) {
        return Err(format!("a line of {what} starts with %, which a spec reads as a section"));
    }
    let mut block = text.replace('%', "%%");
    if !block.ends_with('\n') {
        block.push('\n');
    }
    Ok(block)
}

fn scriptlet(script: &Script) -> Result<String, String> {
    let program = script.program.join(" ");
    let program = one_line("scriptlet interpreter", &program)?;
    let body = text_block(&format!("its {} scriptlet", script.section), &script.body)?;
    Ok(format!("\n{} -p {program}\n{body}", script.section))
}

/// One `%files` line: `%attr(-,USER,GROUP)` (the mode is the copy's, which
/// is the one on disk; a ghost, which may not exist, has the database's),
/// the kind, the quoted path.
fn file_line(file: &PackageFile) -> Result<String, String> {
    let unsafe_char = |c: char| c.is_control() || "\"\\%*?[]{}".contains(c);
    if file.path.contains(unsafe_char) || !file.path.starts_with('/') {
        return Err(format!("its file {:?} cannot be named literally in a spec", file.path));
    }
    let names_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !names_ok(&file.user) || !names_ok(&file.group) {
        return Err(format!("the owner {}:{} of {} is not a plain name", file.user, file.group, file.path));
    }
    let mode = match file.flags & GHOST != 0 {
        true => format!("{:04o}", file.mode & 0o7777),
        false => "-".into(),
    };
    let mut line = format!("%attr({mode},{},{}) ", file.user, file.group);
    if file.is_dir {
        line.push_str("%dir ");
    }
    if file.flags & CONFIG != 0 {
        let options: Vec<&str> = [(NOREPLACE, "noreplace"), (MISSINGOK, "missingok")]
            .into_iter()
            .filter(|(bit, _)| file.flags & bit != 0)
            .map(|(_, word)| word)
            .collect();
        match options.is_empty() {
            true => line.push_str("%config "),
            false => line.push_str(&format!("%config({}) ", options.join(","))),
        }
    }
    for (bit, word) in [(GHOST, "%ghost "), (DOC, "%doc "), (LICENSE, "%license ")] {
        if file.flags & bit != 0 {
            line.push_str(word);
        }
    }
    Ok(format!("{line}\"{}\"\n", file.path))
}

/// Files that are not configuration files and whose digest differs, by
/// `rpm --verify` (which knows the digests and the configuration files);
/// its exit says whether anything differs, so only its lines count.
fn modified_files(root: &RpmRoot, package: &str, work: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut argv = root.rpm_argv();
    argv.extend(["--verify".into(), "--nodeps".into(), "--noscripts".into(), package.into()]);
    let out = capture(&argv, work, TOOL_TIMEOUT)?;
    match out.exit {
        ProcessExit::Code(0 | 1) => Ok(parse_verify(&out.stdout, 2)),
        exit => Err(out.failure(&argv, exit)),
    }
}

/// `rpmbuild -bb` of the spec over `tree`, everything it would compute or
/// change switched off, its macros, temporary files and output kept in
/// `work` (`HOME` too, so no `~/.rpmmacros` changes the build).
fn build(spec: &Path, tree: &Path, work: &Path, arch: &str) -> Result<PathBuf, BackupError> {
    let home = work.join("home");
    std::fs::create_dir_all(&home).map_err(io_error("failed to create", &home))?;
    let define = |name: &str, value: &str| -> [OsString; 2] { ["--define".into(), format!("{name} {value}").into()] };
    let mut argv: Vec<OsString> = vec![
        "env".into(),
        flag("HOME=", &home),
        "LC_ALL=C.UTF-8".into(),
        "rpmbuild".into(),
        "-bb".into(),
        "--nodeps".into(),
        "--target".into(),
        arch.into(),
        "--buildroot".into(),
        tree.into(),
    ];
    let dirs = [("_topdir", "top"), ("_builddir", "build"), ("_rpmdir", "out"), ("_tmppath", "tmp")];
    for (name, dir) in dirs {
        let path = work.join(dir);
        std::fs::create_dir_all(&path).map_err(io_error("failed to create", &path))?;
        argv.extend(define(name, &path.to_string_lossy()));
    }
    let off = ["debug_package", "__spec_install_post", "__os_install_post", "__check_files", "_build_id_links"];
    for name in off {
        argv.extend(define(name, if name == "_build_id_links" { "none" } else { "%{nil}" }));
    }
    argv.extend(define("_binary_payload", "w6.gzdio"));
    argv.push(spec.into());
    let out = capture(&argv, work, TOOL_TIMEOUT)?;
    if out.exit != ProcessExit::Code(0) {
        return Err(out.failure(&argv, out.exit));
    }
    built_package(&work.join("out"))
}

/// The one `.rpm` rpmbuild wrote under `out/ARCH/`.
fn built_package(out: &Path) -> Result<PathBuf, BackupError> {
    let mut found = Vec::new();
    for arch in std::fs::read_dir(out).map_err(io_error("failed to read", out))? {
        let arch = arch.map_err(io_error("failed to read", out))?.path();
        for file in std::fs::read_dir(&arch).map_err(io_error("failed to read", &arch))? {
            let file = file.map_err(io_error("failed to read", &arch))?.path();
            if file.extension().is_some_and(|e| e == "rpm") {
                found.push(file);
            }
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([package]) => Ok(package),
        Err(found) => Err(BackupError::Tool {
            program: "rpmbuild".into(),
            args: String::new(),
            message: format!("wrote {} packages, not one", found.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scripts: [&str; 6], files: &str) -> String {
        let mut fields = vec![
            "pwlib",
            "1",
            "1.0",
            "1",
            "x86_64",
            "demo 100%",
            "MIT",
            "",
            "a\nb",
            "",
            "pwlib = 1:1.0-1\nconfig(pwlib) = 1:1.0-1\n",
            "/bin/sh\nrpmlib(FileDigests) <= 4.6.0-1\n",
            "",
            "",
        ];
        let mut owned: Vec<String> = Vec::new();
        for body in scripts {
            match body.is_empty() {
                true => owned.extend(["".into(), "".into(), "".into()]),
                false => owned.extend(["y".into(), "/bin/sh\n".into(), body.into()]),
            }
        }
        fields.extend(owned.iter().map(String::as_str));
        fields.push(files);
        fields.join("\u{c}")
    }

    const FILES: &str = "/etc/pw/pw.conf\t100640\troot\troot\t17\n/usr/lib/pw\t40755\troot\troot\t0\n\
/usr/lib/pw/link.so\t120777\troot\troot\t0\n/var/log/pw.log\t100644\troot\tadm\t64\n";

    #[test]
    fn the_header_becomes_a_spec_of_exactly_what_is_installed() {
        let header = parse_header(&record(["", "echo 100%", "", "", "", ""], FILES)).unwrap();
        assert_eq!(header.evr(), "1:1.0-1");
        let spec = spec_text(&header, &[]).unwrap();
        assert_eq!(
            spec,
            "Name: pwlib\nEpoch: 1\nVersion: 1.0\nRelease: 1\nSummary: demo 100%%\nLicense: MIT\nAutoReqProv: no\n\
             Provides: config(pwlib) = 1:1.0-1\nRequires: /bin/sh\n\n%description\na\nb\n\n%post -p /bin/sh\necho 100%%\n\
             \n%files\n%attr(-,root,root) %config(noreplace) \"/etc/pw/pw.conf\"\n%attr(-,root,root) %dir \"/usr/lib/pw\"\n\
             %attr(-,root,root) \"/usr/lib/pw/link.so\"\n%attr(0644,root,adm) %ghost \"/var/log/pw.log\"\n"
        );
        let without = spec_text(&header, &[PathBuf::from("/usr/lib/pw/link.so")]).unwrap();
        assert!(!without.contains("link.so"), "{without}");
    }

    #[test]
    fn what_a_spec_cannot_carry_literally_is_refused() {
        let section = parse_header(&record(["", "true\n%files", "", "", "", ""], FILES)).unwrap();
        assert!(spec_text(&section, &[]).unwrap_err().contains("%post"));
        let glob = parse_header(&record(["", "", "", "", "", ""], "/usr/lib/a*b\t100644\troot\troot\t0\n")).unwrap();
        assert!(spec_text(&glob, &[]).unwrap_err().contains("a*b"));
        let mut triggers = parse_header(&record(["", "", "", "", "", ""], FILES)).unwrap();
        triggers.has_triggers = true;
        assert!(spec_text(&triggers, &[]).unwrap_err().contains("triggers"));
        let short = record(["", "", "", "", "", ""], FILES).replacen('\u{c}', "", 1);
        assert!(parse_header(&short).unwrap_err().contains("separators"));
    }

    #[test]
    fn the_query_asks_for_every_scriptlet_and_the_file_list() {
        let format = query_format();
        for (tag, _) in SCRIPTS {
            assert!(format.contains(&format!("%|{tag}?{{%{{{tag}}}}}|")), "{tag}: {format}");
            assert!(format.contains(&format!("[%{{{tag}PROG}}\\n]")), "{tag}");
        }
        assert_eq!(format.matches("\\f").count(), 14 + 3 * SCRIPTS.len());
        assert!(format.ends_with("\\n]\\v"));
    }
}
