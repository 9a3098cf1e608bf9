//! Unit tests of the job file: parsing and its errors, sweep expansion and templates, tasks
//! and their input files.

use super::*;
use std::fs;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("m.wasm"), b"\0asm\x01\0\0\0").expect("write module");
        fs::write(d.path().join("bad.wasm"), b"hello").expect("write bad module");
        Dir(d)
    }
    fn job(&self, src: &str) -> Result<Job, JobError> {
        let p = self.0.path().join("job.toml");
        fs::write(&p, src).expect("write job");
        Job::load(&p)
    }
}

#[test]
fn full_example_expands_in_order() {
    let d = Dir::new();
    let job = d
        .job(
            r#"
name = "pi"
module = "m.wasm"
args = ["{seed}", "{samples}", "x{{y}}"]
retries = 5

[sweep]
seed = { from = 0, to = 4 }
samples = [10, "twenty"]

[limits]
fuel = 1_000
memory = "1MiB"
timeout = "2m"

[reduce]
args = ["reduce"]
"#,
        )
        .expect("valid job");
    assert_eq!(job.name, "pi");
    assert_eq!(job.task_count(), 8);
    assert_eq!(job.retries, 5);
    assert_eq!(job.limits.fuel, 1000);
    assert_eq!(job.limits.memory, 1 << 20);
    assert_eq!(job.limits.timeout_ms, 120_000);
    let args: Vec<Vec<String>> = (0..8).map(|i| job.task(i).expect("task").args).collect();
    assert_eq!(args[0], ["0", "10", "x{y}"]);
    assert_eq!(args[1], ["0", "twenty", "x{y}"]);
    assert_eq!(args[2], ["1", "10", "x{y}"]);
    assert_eq!(args[7], ["3", "twenty", "x{y}"]);
    let r = job.reduce.expect("reduce");
    assert_eq!(r.module, job.module);
    assert_eq!(r.args, ["reduce"]);
}

#[test]
fn defaults_and_name_from_stem() {
    let d = Dir::new();
    let job = d.job("module = \"m.wasm\"\n").expect("valid");
    assert_eq!(job.name, "job");
    assert_eq!(job.task_count(), 1);
    assert_eq!(job.retries, DEFAULT_RETRIES);
    assert_eq!(job.limits, Limits::default());
    assert!(job.reduce.is_none());
}

#[test]
fn range_with_step() {
    let d = Dir::new();
    let job = d
        .job("module = \"m.wasm\"\nargs=[\"{s}\"]\n[sweep]\ns = { from = 0, to = 10, step = 3 }\n")
        .expect("valid");
    assert_eq!(job.task_count(), 4);
    assert_eq!(job.task(3).expect("task").args, ["9"]);
}

#[test]
fn unknown_key_suggests() {
    let d = Dir::new();
    let e = d.job("modle = \"m.wasm\"\n").expect_err("unknown key");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("unknown key \"modle\""), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"module\"?"));

    let e = d
        .job("module = \"m.wasm\"\n\n[limits]\nmemroy = \"1MiB\"\n")
        .expect_err("unknown limit key");
    assert_eq!(e.line, Some(4));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"memory\"?"));
    assert!(e.to_string().contains("job.toml: line 4"), "{e}");
}

#[test]
fn malformed_toml_names_line() {
    let d = Dir::new();
    let e = d
        .job("module = \"m.wasm\"\nargs = [\n")
        .expect_err("malformed");
    assert!(e.line.is_some(), "{e:?}");
}

#[test]
fn empty_sweep_is_an_error() {
    let d = Dir::new();
    let e = d
        .job("module = \"m.wasm\"\n[sweep]\nseed = { from = 3, to = 3 }\n")
        .expect_err("empty");
    assert_eq!(e.field.as_deref(), Some("sweep.seed"));
    let e = d
        .job("module = \"m.wasm\"\n[sweep]\nseed = []\n")
        .expect_err("empty");
    assert!(e.message.contains("no values"), "{e}");
}

#[test]
fn template_errors() {
    let d = Dir::new();
    let e = d
        .job("module = \"m.wasm\"\nargs = [\"{sede}\"]\n[sweep]\nseed = [1]\n")
        .expect_err("bad key");
    assert_eq!(e.field.as_deref(), Some("args[0]"));
    assert_eq!(e.line, Some(2));
    assert_eq!(e.hint.as_deref(), Some("did you mean {seed}?"));
}

#[test]
fn module_checks() {
    let d = Dir::new();
    let e = d.job("module = \"missing.wasm\"\n").expect_err("missing");
    assert_eq!(e.field.as_deref(), Some("module"));
    assert!(e.message.contains("cannot be read"), "{e}");
    let e = d.job("module = \"bad.wasm\"\n").expect_err("not wasm");
    assert!(e.message.contains("not a WebAssembly module"), "{e}");
    let e = d.job("name = \"x\"\n").expect_err("no module");
    assert!(e.message.contains("missing required key \"module\""), "{e}");
}

#[test]
fn bad_limits() {
    let d = Dir::new();
    let e = d
        .job("module = \"m.wasm\"\n[limits]\nmemory = \"12 parsecs\"\n")
        .expect_err("bad size");
    assert_eq!(e.field.as_deref(), Some("limits.memory"));
    assert_eq!(e.line, Some(3));
    let e = d
        .job("module = \"m.wasm\"\n[limits]\nfuel = -1\n")
        .expect_err("bad fuel");
    assert_eq!(e.field.as_deref(), Some("limits.fuel"));
    let e = d
        .job("module = \"m.wasm\"\n[limits]\nmemory = \"8GiB\"\n")
        .expect_err("too big");
    assert!(e.message.contains("4 GiB"), "{e}");
}

#[test]
fn inputs_resolve_and_must_exist() {
    let d = Dir::new();
    fs::create_dir(d.0.path().join("data")).expect("mkdir");
    fs::write(d.0.path().join("data/1.bin"), b"x").expect("write");
    let job = d
        .job("module = \"m.wasm\"\ninputs = [\"data/{n}.bin\"]\n[sweep]\nn = [1]\n")
        .expect("valid");
    assert_eq!(
        job.task(0).expect("task").inputs,
        [d.0.path().join("data/1.bin")]
    );
    let e = d
        .job("module = \"m.wasm\"\ninputs = [\"data/{n}.bin\"]\n[sweep]\nn = [2]\n")
        .expect_err("missing input");
    assert_eq!(e.field.as_deref(), Some("inputs[0]"));
}

#[test]
fn huge_sweeps_are_refused() {
    let d = Dir::new();
    let e = d
        .job("module = \"m.wasm\"\n[sweep]\na = { from = 0, to = 100000 }\nb = { from = 0, to = 100000 }\n")
        .expect_err("too many");
    assert!(e.message.contains("more than the limit"), "{e}");
}

#[test]
fn verify_section_defaults_and_errors() {
    let d = Dir::new();
    let plain = d.job("module = \"m.wasm\"\n").expect("plain");
    assert_eq!(plain.verify, VerifyPolicy::default());
    assert!(plain.checkpoint_interval.is_none());
    assert_eq!(plain.straggler_factor, DEFAULT_STRAGGLER_FACTOR);

    let j = d
        .job("module = \"m.wasm\"\ncheckpoint_interval = \"2s\"\nstraggler_factor = 0\n[verify]\nreplicas = 3\n")
        .expect("replicas");
    assert_eq!(
        (j.verify.replicas, j.verify.quorum, j.verify.max_replicas),
        (3, 2, 5)
    );
    assert_eq!(
        j.checkpoint_interval,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(j.straggler_factor, 0.0);

    let j = d
        .job("module = \"m.wasm\"\nargs = [\"{n}\"]\n[sweep]\nn = [7]\n[verify]\nspot_check = 0.1\nverifier = \"m.wasm\"\nverifier_args = [\"check\", \"{n}\"]\n")
        .expect("spot check");
    assert_eq!(j.verify.max_replicas, 3);
    assert_eq!(j.verifier_args(0), vec!["check".to_string(), "7".into()]);

    let cases = [
        (
            "[verify]\nreplicas = 2\nquorum = 3\n",
            "verify.quorum",
            "more than replicas",
        ),
        (
            "[verify]\nreplicas = 0\n",
            "verify.replicas",
            "out of range",
        ),
        (
            "[verify]\nspot_check = 1.5\n",
            "verify.spot_check",
            "not a fraction",
        ),
        (
            "[verify]\nreplicas = 3\nmax_replicas = 2\n",
            "verify.max_replicas",
            "less than",
        ),
        (
            "[verify]\nverifier = \"bad.wasm\"\n",
            "verify.verifier",
            "not a WebAssembly",
        ),
        (
            "[verify]\nverifier_args = [\"x\"]\n",
            "verify.verifier_args",
            "without a verifier",
        ),
        (
            "checkpoint_interval = \"1ms\"\n",
            "checkpoint_interval",
            "at least",
        ),
        (
            "straggler_factor = 0.5\n",
            "straggler_factor",
            "out of range",
        ),
    ];
    for (body, field, msg) in cases {
        let e = d
            .job(&format!("module = \"m.wasm\"\n{body}"))
            .expect_err(body);
        assert_eq!(e.field.as_deref(), Some(field), "{body}: {e}");
        assert!(e.message.contains(msg), "{body}: {e}");
    }
    let e = d
        .job("module = \"m.wasm\"\n[verify]\nreplica = 2\n")
        .expect_err("typo");
    assert!(
        e.hint.as_deref().unwrap_or("").contains("replicas"),
        "{e:?}"
    );
}

#[test]
fn stored_data_is_named_by_url_and_results_may_go_to_the_store() {
    let d = Dir::new();
    let id = "ab".repeat(32);
    let job = d
        .job(&format!(
            "module = \"naac://{id}/m.wasm\"\ninputs = [\"naac://{id}/part-{{i}}.bin\"]\n[sweep]\ni = [0, 1]\n[output]\nstore = true\n"
        ))
        .expect("valid");
    assert!(job.output_store);
    assert_eq!(job.stored_modules(), vec![format!("naac://{id}/m.wasm")]);
    let t = job.task(1).expect("task");
    assert_eq!(
        store_url(&t.inputs[0]),
        Some(format!("naac://{id}/part-1.bin").as_str())
    );
    // Stored files are not the job's local files (nothing to upload with it).
    assert!(job.files().expect("files").is_empty());
    let e = d
        .job("module = \"m.wasm\"\n[output]\nstores = true\n")
        .expect_err("unknown key");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"store\"?"));
}

fn pipeline(d: &Dir, src: &str) -> Result<pipeline::Pipeline, JobError> {
    let p = d.0.path().join("dag.toml");
    fs::write(&p, src).expect("write job");
    pipeline::Pipeline::load(&p)
}

const DAG: &str = r#"
name = "primes-dag"

[[stage]]
name = "count"
module = "m.wasm"
args = ["{start}", "{width}"]
[stage.sweep]
start = { from = 0, to = 1_000_000, step = 125_000 }
width = [125000]

[[stage]]
name = "copy"
module = "m.wasm"
args = ["echo", "{start}"]
for_each = "count"

[[stage]]
name = "sum"
module = "m.wasm"
args = ["reduce"]
gather = "copy"
"#;

#[test]
fn stages_form_a_dag_with_widths_that_agree() {
    let d = Dir::new();
    assert!(pipeline::has_stages(DAG));
    assert!(!pipeline::has_stages("module = \"m.wasm\"\n"));
    let p = pipeline(&d, DAG).expect("valid");
    assert_eq!(p.name, "primes-dag");
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["count", "copy", "sum"]);
    assert_eq!(p.order, [0, 1, 2]);
    assert_eq!(p.stages[1].input, pipeline::StageInput::ForEach(0));
    assert_eq!(p.stages[2].input, pipeline::StageInput::Gather(1));
    // A for_each stage takes its upstream's sweep: one task per upstream task, same values.
    assert_eq!(p.stages[0].job.task_count(), 8);
    assert_eq!(p.stages[1].job.task_count(), 8);
    assert_eq!(
        p.stages[1].job.task(3).expect("task").args,
        ["echo", "375000"]
    );
    assert_eq!(p.stages[2].job.task_count(), 1);
    assert_eq!(p.stages[1].job.name, "copy");
    // Not one job: checked whole, then read as a pipeline.
    let e = d.job(DAG).expect_err("a pipeline");
    assert_eq!(e.field.as_deref(), Some("stage"), "{e}");
    assert!(e.message.contains("read as a pipeline"), "{e}");
    // The whole as one job: every stage's tasks, roots first in task order.
    let whole = p.as_job();
    assert_eq!(whole.task_count(), 17);
    assert_eq!(p.task_order(), vec![0, 1, 2]);
    let e = d
        .job(&DAG.replace("gather = \"copy\"", "gather = \"cpy\""))
        .expect_err("bad stage");
    assert_eq!(e.field.as_deref(), Some("stage[2].gather"), "{e}");
}

#[test]
fn stage_errors_name_the_line_and_field() {
    let d = Dir::new();
    let err = |src: &str| pipeline(&d, src).expect_err("refused");
    // A reference to no stage, with the names there are.
    let e = err(&DAG.replace("gather = \"copy\"", "gather = \"cpy\""));
    assert_eq!(e.field.as_deref(), Some("stage[2].gather"), "{e}");
    assert_eq!(e.line, Some(22), "{e}");
    assert!(e.message.contains("no stage is named \"cpy\""), "{e}");
    assert!(
        e.hint
            .as_deref()
            .is_some_and(|h| h.contains("count, copy, sum")),
        "{e}"
    );
    // A cycle, through `after`.
    let e = err(&DAG.replace("name = \"count\"", "name = \"count\"\nafter = [\"sum\"]"));
    assert!(e.message.contains("cycle"), "{e}");
    assert!(e.message.contains("count -> sum -> copy -> count"), "{e}");
    // A for_each stage with a sweep of another width.
    let e = err(&DAG.replace(
        "args = [\"echo\", \"{start}\"]\nfor_each = \"count\"",
        "args = [\"echo\", \"{k}\"]\nfor_each = \"count\"\n[stage.sweep]\nk = [1, 2]",
    ));
    assert_eq!(e.field.as_deref(), Some("stage[1].sweep"), "{e}");
    assert!(
        e.message
            .contains("2 tasks, but it runs one per task of \"count\" (8)"),
        "{e}"
    );
    // A template key no stage gives this one.
    let e = err(&DAG.replace("args = [\"echo\", \"{start}\"]", "args = [\"{nope}\"]"));
    assert_eq!(e.field.as_deref(), Some("stage[1].args[0]"), "{e}");
    // Two stages of one name; a stage without one; for_each and gather at once.
    let e = err(&DAG.replace("name = \"copy\"", "name = \"count\""));
    assert!(e.message.contains("two stages are named \"count\""), "{e}");
    let e = err(&DAG.replace("name = \"sum\"\n", ""));
    assert!(e.message.contains("needs a name"), "{e}");
    let e = err(&DAG.replace(
        "gather = \"copy\"",
        "gather = \"copy\"\nfor_each = \"count\"",
    ));
    assert!(e.message.contains("not both"), "{e}");
    // A job file without stages cannot link any.
    let e = d
        .job("module = \"m.wasm\"\nfor_each = \"x\"\n")
        .expect_err("no stages");
    assert_eq!(e.field.as_deref(), Some("for_each"));
    assert!(
        e.hint.as_deref().is_some_and(|h| h.contains("[[stage]]")),
        "{e}"
    );
}

#[test]
fn requirements_parse_and_refuse_what_they_cannot_be() {
    let d = Dir::new();
    let job = d
        .job("module = \"m.wasm\"\n[requirements]\narch = \"aarch64\"\nmin_score = 12.5\ngpus = 1\nlabels = [\"zone=eu\"]\n")
        .expect("valid");
    assert_eq!(job.requirements.arch.as_deref(), Some("aarch64"));
    assert_eq!(job.requirements.min_score, Some(12.5));
    assert_eq!(job.requirements.gpus, 1);
    assert_eq!(job.requirements.labels, ["zone=eu"]);
    assert_eq!(job.requirements.max_latency_ms, None);
    let near = d
        .job("module = \"m.wasm\"\n[requirements]\nmax_latency_ms = 40\n")
        .expect("valid");
    assert_eq!(near.requirements.max_latency_ms, Some(40));
    let e = d
        .job("module = \"m.wasm\"\n[requirements]\nmax_latency_ms = 0\n")
        .expect_err("bad");
    assert_eq!(
        (e.field.as_deref(), e.line),
        (Some("requirements.max_latency_ms"), Some(3))
    );
    let e = d
        .job("module = \"m.wasm\"\n[requirements]\ngpus = -1\n")
        .expect_err("bad");
    assert_eq!(
        (e.field.as_deref(), e.line),
        (Some("requirements.gpus"), Some(3))
    );
    let e = d
        .job("module = \"m.wasm\"\n[requirements]\nmin_scor = 3\n")
        .expect_err("unknown");
    assert_eq!(e.hint.as_deref(), Some("did you mean \"min_score\"?"));
}
