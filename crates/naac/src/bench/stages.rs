//! The pipeline figures: a 3-stage pipeline of tiny tasks against the single-stage rate in
//! the same run, pipelining against stage-by-stage on uneven task times, and the bytes that
//! pass through the requester for an intermediate output.

use super::{Bench, Figure};
use anyhow::Context as _;
use serde_json::json;
use std::path::PathBuf;

impl Bench {
    /// Writes a job file of stages (the testkit module is in the bench dir).
    fn staged(&self, name: &str, body: &str) -> anyhow::Result<PathBuf> {
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(&p, format!("name = \"{name}\"\n{body}"))
            .with_context(|| format!("write {}", p.display()))?;
        Ok(p)
    }

    pub(super) async fn stages(&self) -> anyhow::Result<Vec<Figure>> {
        let n = if self.quick { 2_000 } else { 10_000 };
        let mut figures = Vec::new();

        // Three stages of n tiny tasks against one stage of n, on the same pool size.
        let one = self.job(
            "flat",
            &format!("args = [\"noop\"]\n[sweep]\ni = {{ from = 0, to = {n} }}\n"),
        )?;
        let three = self.staged(
            "dag3",
            &format!(
                r#"
[[stage]]
name = "a"
module = "testkit.wasm"
args = ["print", "{{i}}"]
[stage.sweep]
i = {{ from = 0, to = {n} }}

[[stage]]
name = "b"
module = "testkit.wasm"
args = ["echo"]
for_each = "a"

[[stage]]
name = "c"
module = "testkit.wasm"
args = ["echo"]
for_each = "b"
"#
            ),
        )?;
        let flat = n as f64 / self.run(&one, 2, None).await?;
        let staged = (3 * n) as f64 / self.run(&three, 2, None).await?;
        figures.push(Figure {
            name: "3-stage pipeline, tiny tasks",
            value: format!("{staged:.0} tasks/s"),
            target: ">= 0.8x one stage",
            baseline: format!("one stage {flat:.0}/s"),
            ratio: Some(staged / flat),
            raw: json!({"tasks_per_stage": n, "staged_tasks_per_second": staged, "one_stage_tasks_per_second": flat}),
        });

        // Uneven task times: one upstream task is long, its stage's others short, and the
        // downstream tasks of the short ones long. Stage by stage, the downstream waits for
        // the long one with a slot idle; pipelined, it starts on that slot at once.
        let w: usize = if self.quick { 8 } else { 16 };
        let up: Vec<String> = (0..w)
            .map(|i| if i == 0 { 125 * w } else { 50 }.to_string())
            .collect();
        let down: Vec<String> = (0..w)
            .map(|i| if i == 0 { 50 } else { 200 }.to_string())
            .collect();
        let body = |barrier: &str| {
            format!(
                r#"
[[stage]]
name = "up"
module = "testkit.wasm"
args = ["spin", "{{ms}}"]
straggler_factor = 0
[stage.sweep]
ms = [{up}]

[[stage]]
name = "down"
module = "testkit.wasm"
args = ["spin", "{{ms}}"]
straggler_factor = 0
for_each = "up"
{barrier}
[stage.sweep]
ms = [{down}]
"#,
                up = up.join(", "),
                down = down.join(", ")
            )
        };
        let piped = self.staged("piped", &body(""))?;
        let barrier = self.staged("barrier", &body("after = [\"up\"]"))?;
        let t_piped = self.run(&piped, 2, None).await?;
        let t_barrier = self.run(&barrier, 2, None).await?;
        figures.push(Figure {
            name: "pipelining, uneven tasks",
            value: format!("{t_piped:.2} s"),
            target: "< stage-by-stage",
            baseline: format!("stage-by-stage {t_barrier:.2} s"),
            ratio: Some(t_barrier / t_piped),
            raw: json!({"tasks_per_stage": w, "pipelined_seconds": t_piped, "stage_by_stage_seconds": t_barrier}),
        });

        // An intermediate output: what the requester takes in and hands out for it.
        // 8 tasks' files of a 1 GiB intermediate (64 MiB with --quick).
        let mib: u64 = if self.quick { 64 } else { 1024 };
        let inter = self.staged(
            "intermediate",
            &format!(
                r#"
[[stage]]
name = "make"
module = "testkit.wasm"
args = ["outfile", "data.bin", "{{n}}"]
[stage.sweep]
n = [{sizes}]

[[stage]]
name = "use"
module = "testkit.wasm"
args = ["readin", "from/make/data.bin"]
for_each = "make"
"#,
                sizes = (0..8)
                    .map(|i| ((mib << 20 >> 3) + i).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )?;
        let f = self.run_with(&inter, 2, None, &[]).await?;
        let served = f.summary.served.bytes;
        // What came in: the intermediate files the requester received (and wrote).
        let received: u64 = (0..8)
            .filter_map(|i| {
                let p = f
                    .summary
                    .out_dir
                    .join(format!("stages/make/tasks/{i}/out/data.bin"));
                std::fs::metadata(p).ok().map(|m| m.len())
            })
            .sum();
        let intermediate = (mib << 20) + 28;
        let per_byte = (served + received) as f64 / intermediate as f64;
        figures.push(Figure {
            name: "requester bytes per intermediate byte",
            value: format!("{per_byte:.2}"),
            target: "~0 (digests only)",
            baseline: format!("{mib} MiB intermediate"),
            ratio: None,
            raw: json!({"intermediate_bytes": intermediate, "served_bytes": served, "received_bytes": received}),
        });
        Ok(figures)
    }
}
