//! `naac completions SHELL` and `naac man`: shell completions and one man page covering
//! every command, both made from the same clap definitions as `--help`.

use std::io::Write;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Writes the completion script for `a.shell` to stdout.
pub fn completions(a: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<()> {
    // Into memory first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "naac", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

/// Writes the man page (roff) to stdout.
pub fn man(cmd: clap::Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&page(cmd)?)?;
    out.flush()?;
    Ok(())
}

/// The whole page: the top-level sections clap_mangen renders, then a COMMANDS section with
/// every command (and its subcommands, depth first) in full: what it does, its usage and its
/// options. One page, so `man naac` answers for every command.
pub fn page(mut cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    // Builds every subcommand's bin name ("naac policy set") for the synopses.
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).manual("naac manual");
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    writeln!(w, ".SH COMMANDS")?;
    for sub in visible(&cmd) {
        command(&mut w, sub)?;
    }
    man.render_extra_section(&mut w)?;
    w.extend_from_slice(FILES.as_bytes());
    man.render_version_section(&mut w)?;
    Ok(w)
}

const FILES: &str = ".SH FILES
.TP
\\fB$NAAC_HOME\\fR (default \\fI~/.local/share/naac\\fR)
The data dir: this machine's identity, the owner's policy (\\fIpolicy.toml\\fR), the API token (\\fIapi.token\\fR), jobs and their results, the module cache.
.SH ENVIRONMENT
.TP
\\fBNAAC_HOME\\fR
The data dir.
.TP
\\fBRUST_LOG\\fR
Log filter on stderr, e.g. \\fInaac=debug\\fR.
.TP
\\fBNO_COLOR\\fR
No colour in logs.
";

/// The subcommands a user sees, in their definition order (no `help`).
fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// One command as a subsection: its about, its usage, its options; then its subcommands.
fn command(w: &mut Vec<u8>, cmd: &clap::Command) -> anyhow::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    writeln!(w, ".SS \"{}\"", name.replace('"', ""))?;
    let man = clap_mangen::Man::new(cmd.clone());
    let mut sections = Vec::new();
    man.render_description_section(&mut sections)?;
    man.render_synopsis_section(&mut sections)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut sections)?;
    }
    // Inside a subsection, a section heading becomes an indented paragraph's label.
    for line in String::from_utf8_lossy(&sections).lines() {
        match line.strip_prefix(".SH ") {
            Some("DESCRIPTION") => {}
            Some("SYNOPSIS") => writeln!(w, ".PP\nUsage:")?,
            Some(h) => writeln!(w, ".PP\n{}:", title_case(h.trim_matches('"')))?,
            None => writeln!(w, "{line}")?,
        }
    }
    for sub in visible(cmd) {
        command(w, sub)?;
    }
    Ok(())
}

fn title_case(h: &str) -> String {
    let lower = h.to_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headings_read_as_labels() {
        assert_eq!(title_case("OPTIONS"), "Options");
        assert_eq!(title_case(""), "");
    }
}
