"""`poetry run evaluate`: the report's files, resuming, and one-line errors for bad requests."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
PLOTS = {"latent_space.png", "rms_std_vs_loss.png", "dale_chall_vs_metrics.png", "kmeans_clusters.png",
         "spectral_flatness_vs_cer.png", "reliability_diagram.png", "wer_vs_speaking_rate.png"}


def evaluate(*args: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "librispeech_tools.evaluate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "TL_DISABLE_ANALYTICS": "true", **environment})


def test_report_files_and_resume(tiny_model, tmp_path):
    out = tmp_path / "report"
    first = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out),
                     "--batch-size", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "6 evaluated" in first.stdout
    table = pd.read_parquet(out / "samples.parquet")
    assert len(table) == 6 and table["split"].eq("test-clean").all()
    csv = pd.read_csv(out / "samples.csv")
    assert list(csv.columns) == list(table.columns) and csv["id"].tolist() == table["id"].tolist()
    for column in ("id", "reference", "hypothesis", "loss", "wer", "cer", "wip", "char_insertions",
                   "speech.rms_std", "text.word_count", "readability.dale_chall_readability_score",
                   "records.sex", "records.book_title", "pace.words_per_second", "pace.pause_count",
                   "noise.snr_db", "mean_word_confidence", "confident_errors"):
        assert column in table.columns, column
    assert PLOTS <= {p.name for p in out.iterdir()}
    summary = (out / "summary.md").read_text()
    # Corpus rates are errors summed over all words (jiwer over every pair), not means of the per-sample rates.
    assert (f"corpus WER {jiwer.wer(list(table.reference), list(table.hypothesis)):.2%}, "
            f"CER {jiwer.cer(list(table.reference), list(table.hypothesis)):.2%}") in summary
    by_sex = summary.split("## By sex")[1].split("## By speaker")[0]
    for sex, group in table.groupby("records.sex"):
        assert (f"| {sex} | {len(group)} | {jiwer.wer(list(group.reference), list(group.hypothesis)):.2%} | "
                f"{jiwer.cer(list(group.reference), list(group.hypothesis)):.2%} | {group.loss.mean():.3f} | "
                f"{group.loss.sum() / sum(len(text) for text in group.reference):.4f} |") in by_sex
    assert "- data: bundled synthetic corpus (openslr); left out: " in summary
    assert {f"- [{name}]({name}): " for name in PLOTS} <= {line.split(")")[0] + "): " for line in
                                                          summary.split("## Plots")[1].splitlines() if line}
    for section in ("## Word errors", "### Top 20 confusion pairs", "### Most deleted words", "### Most inserted words",
                    "### Word error rate by word frequency (insertions left out)", "### WER by speaking rate"):
        assert section in summary, section
    assert "words" not in table.columns  # the aligned words stay in samples.jsonl
    # 6 utterances are too few for rank correlations: the section says so, and the CSV lists every numeric field.
    assert "## What goes with the errors\n\nNo rank correlations: they need at least 10 utterances" in summary
    factors = pd.read_csv(out / "error_factors.csv")
    assert {"speech.rms_std", "pace.pause_count", "noise.snr_db", "readability.dale_chall_readability_score",
            "records.speaker_minutes"} <= set(factors["field"]) and "records.sex" not in set(factors["field"])
    words = pd.read_csv(out / "words.csv")
    assert list(words.columns) == ["id", "kind", "reference", "hypothesis", "confidence", "start_seconds",
                                   "end_seconds"]
    assert set(words["id"]) <= set(table["id"]) and set(words["kind"]) <= {"correct", "substitution", "insertion",
                                                                            "deletion"}

    # Rerun on the finished report with another engine: nothing is evaluated, and the report still names only the
    # engine that made its rows.
    engine = json.loads((out / "run.json").read_text())["model_pass"]["engine"]
    start_up = json.loads((out / "run.json").read_text())["stages"]["seconds"]["start-up"]
    other = "keras" if engine == "onnxruntime" else "onnxruntime"
    rerun = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out),
                     "--engine", other)
    assert rerun.returncode == 0 and "0 evaluated" in rerun.stdout, rerun.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["model_pass"]["engine"] == engine
    assert json.loads((out / "run.json").read_text())["stages"]["seconds"]["start-up"] == start_up  # made no row

    # An interrupted run keeps its rows: drop one, cut one mid-line and damage one in the middle, then rerun: only
    # those three are computed again, and the two unreadable lines are named.
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join([lines[0], lines[1][:50], *lines[2:4]]) + "\n" + lines[4][:50])
    second = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "3 evaluated" in second.stdout
    assert "2 unreadable line(s) left out (line 2, 5)" in second.stderr
    assert "(the timing covers 3 of the 6 samples)" in (out / "summary.md").read_text()  # 3 rows were lost

    # Interrupted after its first batch of 4 (what progress.json then holds), a run's timing adds up over the runs.
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join(lines[:4]) + "\n")
    progress = json.loads((out / "progress.json").read_text())
    progress["seconds"], progress["model_pass"] = 100.0, {**progress["model_pass"], "seconds": 50.0, "batches": 1,
                                                         "samples": 4, "audio_seconds": 20.0}
    progress["stages"] = {"seconds": {"start-up": 40.0, "waiting for the model": 30.0}, "samples": 4}
    (out / "progress.json").write_text(json.dumps(progress))
    third = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out),
                     "--batch-size", "4")
    assert third.returncode == 0, third.stderr[-3000:]
    run_line = next(line for line in (out / "summary.md").read_text().splitlines()
                    if line.startswith("- evaluation time (after start-up): "))
    assert float(run_line.split("start-up): ")[1].split(" s")[0]) > 100.0
    assert ", 2 batches, " in run_line and "timing covers" not in run_line
    model_pass = json.loads((out / "run.json").read_text())["model_pass"]
    assert model_pass["samples"] == 6 and 50.0 < model_pass["seconds"] and model_pass["audio_seconds"] > 20.0
    stages = json.loads((out / "run.json").read_text())["stages"]  # the stages add up over the runs, too
    assert stages["samples"] == 6 and stages["seconds"]["start-up"] > 40.0
    assert stages["seconds"]["waiting for the model"] > 30.0
    assert "- time by stage (6 samples; " in (out / "summary.md").read_text()

    # A rerun that would make other rows (another selection, model or LM lexicon) does not reuse or drop these.
    lexicon = tmp_path / "lexicon-copy.txt"
    lexicon.write_bytes((REPO / "librispeech" / "lm" / "demo-lexicon.txt").read_bytes())
    for arguments, environment, says in ((["--limit", "5", "--model", str(tiny_model)], {}, "limit was 6, now 5"),
                                         (["--limit", "6"], {}, f"model was ['{tiny_model}'"),
                                         (["--limit", "6", "--model", str(tiny_model)],
                                          {"LIBRISPEECH_LEXICON": str(lexicon)},
                                          f"lexicon was ['{REPO / 'librispeech' / 'lm' / 'demo-lexicon.txt'}'")):
        refused = evaluate("--split", "test-clean", *arguments, "--out", str(out), **environment)
        assert refused.returncode != 0 and f"holds the rows of another run ({says}" in refused.stderr, refused.stderr
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(table["id"])
    (out / "summary.md").unlink()
    (out / "summary.md").mkdir()  # a report file that cannot be written (as a read-only one, even for root)
    blocked = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out))
    assert blocked.returncode != 0 and "Traceback" not in blocked.stderr, blocked.stderr[-3000:]
    assert blocked.stderr.strip().splitlines()[-1].startswith(
        f"evaluate: cannot write the report in {out}: {out / 'summary.md'} Is a directory; the rows are kept")
    (out / "summary.md").rmdir()
    (out / "progress.json").write_text("")  # as a run killed while writing it would leave it, before it was atomic
    damaged = evaluate("--split", "test-clean", "--limit", "6", "--model", str(tiny_model), "--out", str(out))
    assert damaged.returncode != 0 and damaged.stderr.strip().splitlines()[-1].endswith(
        "progress.json is damaged, so what made the rows in " + str(out) + " is unknown; use another --out, or "
        "delete the folder to start again")


def test_default_report_folders_differ_for_runs_that_make_other_rows():
    from librispeech_tools.report_folder import default_folder_name
    from librispeech_tools.split_selection import Shard

    names = {default_folder_name("dev-clean", Path(model), limit, shard)
             for model in ("m/demo.h5", "m/demo.onnx") for limit in (None, 5) for shard in (None, Shard(1, 2))}
    assert len(names) == 8 and "dev-clean-demo" in names and "dev-clean-demo-onnx-limit-5-shard-1-of-2" in names


@pytest.mark.parametrize("arguments, environment, message", [
    (["--split", "no-such-split"], {}, "unknown split 'no-such-split'"),
    (["--split", "nope/test"], {"LIBRISPEECH_SOURCE": "huggingface"},
     "unknown HF config 'nope' in --split nope/test: data.hf_splits in librispeech/config.yaml lists clean, other, all"),
    (["--model", "/nonexistent/model.h5"], {}, "no wav2vec2 model at /nonexistent/model.h5"),
    ([], {"LIBRISPEECH_SAMPLES_PER_SPLIT": "0"}, "(LIBRISPEECH_SAMPLES_PER_SPLIT) must be a positive integer"),
    ([], {"LIBRISPEECH_SOURCE": "s3"}, "(LIBRISPEECH_SOURCE) must be 'openslr' or 'huggingface', got 's3'"),
    (["--split", "dev-clean", "--limit", "2", "--shard", "3/3"], {}, "shard 3/3 is empty: the selection has 2"),
    (["--limit", "1", "--out", str(REPO / "README.md")], {}, "cannot make the report folder"),
    (["--merge", "a", "b", "--out", "c", "--limit", "2"], {}, "--merge takes only the shard folders and --out"),
    (["--limit", "0"], {}, "--limit"),
    (["--batch-size", "0"], {}, "--batch-size"),
    (["--metadata-workers", "-1"], {}, "--metadata-workers"),
    (["--merge", "a", "b"], {}, "--merge needs --out"),
])
def test_bad_requests_are_one_line_errors(arguments, environment, message):
    result = evaluate(*arguments, **environment)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluate: ") and message in last


def test_a_folder_that_is_not_a_report_is_not_written_into(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "summary.md").write_text("my notes")
    for arguments in (["--limit", "1"], ["--merge", str(tmp_path / "a"), str(tmp_path / "b")]):
        result = evaluate(*arguments, "--out", str(out))
        assert result.stderr.strip().splitlines()[-1] == (
            f"evaluate: {out} holds other files and no report (samples.jsonl, progress.json, run.json); the report "
            f"would overwrite some: use an empty or new --out"), result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["summary.md"] and (out / "summary.md").read_text() == "my notes"
    from librispeech_tools.report_folder import prepare_folder

    hidden_only = tmp_path / "kept-in-git"
    hidden_only.mkdir()
    (hidden_only / ".gitkeep").write_text("")
    assert prepare_folder(hidden_only) is False  # hidden files are nobody's report: the folder is taken


def test_a_run_that_fails_before_its_model_pass_leaves_no_folder(tmp_path):
    out = tmp_path / "reports" / "report"
    result = evaluate("--limit", "1", "--model", str(REPO / "README.md"), "--out", str(out))
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("evaluate: ")
    assert not out.exists()
    out.mkdir()  # a folder the user made stays
    assert evaluate("--limit", "1", "--model", str(REPO / "README.md"), "--out", str(out)).returncode != 0
    assert out.is_dir()


def test_empty_selection_is_a_one_line_error(tmp_path, tiny_model):
    (tmp_path / "LibriSpeech" / "dev-clean" / "1" / "2").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "librispeech_tools.evaluate", "--model", str(tiny_model)], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "LIBRISPEECH_ROOT": str(tmp_path / "LibriSpeech")})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("evaluate: empty selection")


def test_onnx_export_gives_the_h5_report_rows(tiny_model, tmp_path):
    """evaluate on an .onnx export: the same hypotheses, losses and latent vectors (the export's inner hidden state)
    as on the .h5 it came from."""
    from librispeech_tools.export import export

    onnx_model = export(tiny_model, tmp_path / "tiny.onnx", verify=False)[0]
    rows = {}
    for model in (tiny_model, onnx_model):
        out = tmp_path / model.suffix[1:]
        result = evaluate("--split", "test-clean", "--limit", "2", "--model", str(model), "--out", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "latent_space.png" in {p.name for p in out.iterdir()}
        lines = (out / "samples.jsonl").read_text().splitlines()
        rows[model.suffix] = {row["id"]: row for row in map(json.loads, lines)}
    assert sorted(rows[".h5"]) == sorted(rows[".onnx"]) and len(rows[".h5"]) == 2
    for sample_id, row in rows[".h5"].items():
        other = rows[".onnx"][sample_id]
        assert other["hypothesis"] == row["hypothesis"]
        assert other["loss"] == pytest.approx(row["loss"], rel=1e-3, abs=1e-3)
        assert max(abs(a - b) for a, b in zip(other["latent"], row["latent"])) <= 1e-4


@pytest.mark.parametrize("suffix, options", [(".onnx", []), (".h5", ["--fixed-length"])])
def test_utterances_longer_than_a_fixed_length_model_are_left_out_and_listed(tiny_model, tmp_path, suffix, options):
    """An .onnx exported with --max-seconds, or such an .h5 run at its fixed length."""
    from librispeech_tools.export import export

    short = export(tiny_model, tmp_path / f"short{suffix}", max_seconds=3.5, verify=False)[0]
    result = evaluate("--split", "test-clean", "--model", str(short), "--out", str(tmp_path / "out"), *options)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"short{suffix} takes at most 56000 samples; left out 18 longer utterance(s)" in result.stderr
    assert len(pd.read_csv(tmp_path / "out" / "samples.csv")) == 2  # the bundled test-clean has two under 3.5 s
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "left out: 18" in summary and "longer than the model's fixed input (56000 samples)" in summary


def test_a_shard_whose_utterances_are_all_longer_than_a_fixed_length_onnx_still_merges(tiny_model, tmp_path):
    """The bundled test-clean's two utterances under 3.5 s (9318-931801-0002, 9342-934202-0001) are both in shard
    1/2: shard 2/2 has none that fits, which leaves it without rows, not failed, so the merge still completes."""
    from librispeech_tools.export import export

    short = export(tiny_model, tmp_path / "short.onnx", max_seconds=3.5, verify=False)[0]
    for index in (1, 2):
        result = evaluate("--split", "test-clean", "--model", str(short), "--out", str(tmp_path / f"shard{index}"),
                          "--shard", f"{index}/2")
        assert result.returncode == 0, result.stderr[-3000:]
    assert ("evaluate: shard 2/2: no sample could be evaluated (10 left out: longer than the model's fixed input "
            "(56000 samples)); run.json records it for --merge") in result.stderr
    assert "every utterance of this shard is longer than short.onnx's fixed input (if every" in result.stderr
    result = evaluate("--merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "all"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(pd.read_csv(tmp_path / "all" / "samples.csv")["id"]) == ["9318-931801-0002", "9342-934202-0001"]
    assert "left out: 18" in (tmp_path / "all" / "summary.md").read_text()


def test_a_fixed_length_onnx_runs_its_calls_in_the_metadata_workers_order(tiny_model, tmp_path):
    """A fixed-length .onnx is known as such once it has loaded, after the metadata worker was handed the samples in
    the real-length order: the calls follow that order, so the worker has each row ready (none computed in line even
    with 2 samples handed ahead) and the rows are those of the same model run on real lengths."""
    from librispeech_tools.export import export

    fixed = export(tiny_model, tmp_path / "fixed.onnx", max_seconds=35, verify=False)[0]
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from librispeech_tools import evaluate, metadata_processes\n"
        "in_line, metadata_row = [], metadata_processes.metadata_row\n"
        "metadata_processes.metadata_row = lambda sample_id, response: in_line.append(sample_id) or "
        "metadata_row(sample_id, response)\n"
        "metadata_processes.LOOKAHEAD = 2\n"
        "if __name__ == '__main__':\n"
        "    evaluate.main(sys.argv[1:])\n"
        "    print('computed in line:', len(in_line))\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), "--split", "test-clean", "--model", str(fixed), "--out",
                             str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "20 evaluated" in result.stdout and "computed in line: 0" in result.stdout, result.stdout[-2000:]


def damage_flac_bodies(folder: Path, count: int | None = None) -> list[str]:
    """Cut the first `count` FLACs under `folder` (all: None) to half their bytes: the header still gives the full
    length, as after an interrupted copy, so listing keeps them. Returns their ids."""
    flacs = sorted(folder.rglob("*.flac"))[:count]
    for flac in flacs:
        flac.write_bytes(flac.read_bytes()[:flac.stat().st_size // 2])
    return [flac.stem for flac in flacs]


def test_audio_that_fails_to_decode_is_left_out_and_listed(tiny_model, tmp_path):
    import shutil

    corpus = tmp_path / "LibriSpeech"
    shutil.copytree(REPO / "data" / "LibriSpeech", corpus)
    damaged = damage_flac_bodies(corpus / "test-clean", 2)
    result = evaluate("--split", "test-clean", "--model", str(tiny_model), "--out", str(tmp_path / "out"),
                      LIBRISPEECH_ROOT=str(corpus))
    assert result.returncode == 0, result.stderr[-3000:]
    for sample_id in damaged:
        assert f"evaluate: left out {sample_id}: cannot decode audio of {sample_id} (" in result.stderr
    ids = pd.read_csv(tmp_path / "out" / "samples.csv")["id"].tolist()
    assert len(ids) == 18 and not set(damaged) & set(ids)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "left out: 2" in summary and f"{damaged[0]}: unreadable audio (cannot decode audio of" in summary
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert sorted(e[0] for e in run["excluded"]) == sorted(damaged) and run["samples"] == 18

    damage_flac_bodies(corpus / "test-clean")  # nothing left to evaluate: one line, no report
    result = evaluate("--split", "test-clean", "--model", str(tiny_model), "--out", str(tmp_path / "none"),
                      LIBRISPEECH_ROOT=str(corpus))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("evaluate: no sample could be evaluated: the 20 selected were "
                                                      "all left out (unreadable audio)")
    assert not (tmp_path / "none" / "summary.md").exists()
    # a shard without rows still says so in run.json, so --merge can take it with the others
    result = evaluate("--split", "test-clean", "--model", str(tiny_model), "--out", str(tmp_path / "shard"),
                      "--shard", "3/20", LIBRISPEECH_ROOT=str(corpus))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("evaluate: shard 3/20: no sample could be evaluated (1 left out: unreadable audio); run.json records it "
            "for --merge") in result.stderr
    assert json.loads((tmp_path / "shard" / "run.json").read_text())["samples"] == 0


def test_onnx_without_the_hidden_state_is_a_one_line_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["audio"], ["logits"]),
                               helper.make_node("Identity", ["audio_length"], ["unused"])], "foreign",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 559280]),
                               helper.make_tensor_value_info("audio_length", TensorProto.FLOAT, ["batch", 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 559280])])
    path = tmp_path / "foreign.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    # it says it has the base conv stack (else the runtime's frame check refuses it first)
    helper.set_model_props(model, {"wav2vec2_config": '{"conv_kernel": [10, 3, 3, 3, 3, 2, 2], '
                                                      '"conv_stride": [5, 2, 2, 2, 2, 2, 2]}'})
    onnx.save_model(model, str(path))
    result = evaluate("--limit", "1", "--model", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("evaluate: no 'last_hidden_state' tensor inside")


def test_summary_tables_keep_their_columns_with_a_pipe_in_a_name(tmp_path):
    """LibriSpeech's SPEAKERS.TXT names speaker 60 "|CBW|Simon"; the long list of left-out utterances is cut."""
    from librispeech import data
    from librispeech_tools.model_pass import ModelPassTiming
    from librispeech_tools.report import write_summary
    from librispeech_tools.run_info import Excluded, RunInfo

    table = pd.DataFrame({"id": ["60-1-0001", "61-1-0001"], "reference": ["A CAT", "A DOG"],
                          "hypothesis": ["A CAT", "A DOT"], "loss": [1.0, 2.0], "wer": [0.0, 0.5], "cer": [0.0, 0.2],
                          "speech.speaker_id": [60, 61], "records.speaker_name": ["|CBW|Simon", "Ann"],
                          "records.sex": ["M", "F"]})
    excluded = [Excluded(f"1-1-{i:04d}", "unreadable audio") for i in range(25)]
    excluded.append(Excluded("61-1-0001", data.REPEATED_ID, "1-1.trans.txt line 3: same transcript"))
    run_info = RunInfo("test-clean", "test", "openslr", excluded, "m.h5", 2, None, ModelPassTiming(), 1.0)
    write_summary(table, tmp_path, run_info, Path("m.h5"), 1.0)
    summary = (tmp_path / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| 60 ") or line.startswith("| 61 ")]
    assert rows[0].startswith("| 60 \\|CBW\\|Simon | 1 |")
    assert {line.replace("\\|", "").count("|") for line in rows} == {7}  # six columns each
    assert "1-1-0019" in summary and "1-1-0020" not in summary and "and 6 more (all in run.json)" in summary
    assert "left out: 26 (1 of them repeated lines of ids that are evaluated)\n" in summary
    # with --limit, the listing leaves out what it meets while drawing the sample: 26 beside 2 is not 26 of the 2
    limited = RunInfo("test-clean", "test", "openslr", excluded, "m.h5", 2, None, ModelPassTiming(), 1.0,
                      made_by={"limit": 2})
    write_summary(table, tmp_path, limited, Path("m.h5"), 1.0)
    assert ("left out: 26 (1 of them repeated lines of ids that are evaluated), among the utterances examined to "
            "draw the --limit 2 sample\n") in (tmp_path / "summary.md").read_text()


def test_summary_says_which_samples_lack_records_or_have_characters_outside_the_vocabulary():
    from librispeech_tools.report import data_notes

    table = pd.DataFrame({"id": ["3-1-0001", "2-1-0001", "1-1-0001"],
                          "records.sex": [None, "F", "M"], "records.speaker_name": [None, "Ann", "Bob"],
                          "records.chapter_title": ["One", None, "Two"], "records.chapter_minutes": [3.2, None, 1.0],
                          "text.unknown_character_count": [0, 2, 3]})
    assert data_notes(table, "openslr") == [
        "- records: 1 sample(s) have no SPEAKERS.TXT row (sex `unknown` below) and 1 no CHAPTERS.TXT row (first: "
        "2-1-0001)",
        "- characters outside the vocabulary: 5 in 2 reference(s), each read as one ⁇ that the model cannot spell, "
        "so the loss and error rates count them (first: 1-1-0001)"]
    assert len(data_notes(table, "huggingface")) == 1  # the HF copy has no corpus tables to lack a row
    clean = table.assign(**{"records.sex": "F", "records.speaker_name": "Ann", "records.chapter_title": "One",
                            "records.chapter_minutes": 1.0, "text.unknown_character_count": 0})
    assert data_notes(clean, "openslr") == []


@pytest.mark.parametrize("damage, says", [
    ("a file", "has no run.json: not a finished evaluate run"),
    ("", "cannot be read as an evaluate run (JSONDecodeError: "),
    ("{}", "cannot be read as an evaluate run (KeyError: 'samples')"),
    ("[1, 2]", "cannot be read as an evaluate run (TypeError: "),
])
def test_merge_of_a_folder_that_is_no_finished_run_is_one_line(tmp_path, capsys, damage, says):
    from librispeech_tools import evaluate as evaluate_module

    shard = tmp_path / "shard"
    if damage == "a file":
        shard.write_text("")
    else:
        shard.mkdir()
        (shard / "run.json").write_text(damage)
    with pytest.raises(SystemExit) as exit_status:
        evaluate_module.main(["--merge", str(shard), "--out", str(tmp_path / "merged")])
    assert exit_status.value.code.startswith("evaluate: ") and says in exit_status.value.code, exit_status.value.code
    assert not (tmp_path / "merged").exists()


def test_rows_of_an_earlier_format_are_not_resumed(tmp_path):
    """Rows whose columns mean something else (ids as numbers, losses before the CTC cut moved) would mix with new
    ones in one report: progress.json records the rows' format, and a folder without it or with another is refused."""
    import json

    from librispeech_tools.evaluate_errors import EvaluationError
    from librispeech_tools.report_folder import ROWS_FORMAT, resume

    made_by = {"rows_format": ROWS_FORMAT, "model": ["m.h5", 1, 2], "limit": 2}
    (tmp_path / "samples.jsonl").write_text(json.dumps({"id": "1-2-0000", "speech.speaker_id": 1}) + "\n")
    timing = {"seconds": 1.0, "audio_seconds": 2.0, "batches": 1, "samples": 1}
    for earlier, says in (({k: v for k, v in made_by.items() if k != "rows_format"}, "was not recorded"),
                          ({**made_by, "rows_format": ROWS_FORMAT - 1}, f"was {ROWS_FORMAT - 1}")):
        (tmp_path / "progress.json").write_text(json.dumps({"made_by": earlier, "seconds": 1.0, "model_pass": timing}))
        with pytest.raises(EvaluationError, match=f"holds the rows of another run \\(rows_format {says}, now "
                                                  f"{ROWS_FORMAT}\\)"):
            resume(tmp_path, made_by, tmp_path / "samples.jsonl")
    (tmp_path / "progress.json").write_text(json.dumps({"made_by": made_by, "seconds": 1.0, "model_pass": timing}))
    assert [row["id"] for row in resume(tmp_path, made_by, tmp_path / "samples.jsonl")[0]] == ["1-2-0000"]


def test_an_interrupt_before_the_model_pass_is_one_line(monkeypatch, capsys):
    from librispeech_tools import evaluate as evaluate_module

    def interrupted(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "run", interrupted)
    with pytest.raises(SystemExit) as exit_status:
        evaluate_module.main(["--limit", "1", "--engine", "keras"])
    assert exit_status.value.code == 130 and capsys.readouterr().err == "evaluate: interrupted\n"


def test_an_interrupt_in_the_model_pass_keeps_the_finished_rows_and_exits_130(tiny_model, tmp_path, monkeypatch,
                                                                              capsys):
    import librispeech
    from librispeech_tools import evaluate as evaluate_module

    monkeypatch.setenv(librispeech.WITHOUT_KERAS_ENV, "")  # main() sets it: monkeypatch then unsets it after the test
    finish_rows = evaluate_module.evaluate_rows

    def first_batch_then_ctrl_c(split, model_pass, batches, *rest):
        finish_rows(split, model_pass, batches[:1], *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "evaluate_rows", first_batch_then_ctrl_c)
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exit_status:
        evaluate_module.main(["--split", "test-clean", "--limit", "3", "--model", str(tiny_model), "--out", str(out),
                              "--metadata-workers", "0"])
    assert exit_status.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"evaluate: interrupted; finished samples are kept in {out / 'samples.jsonl'} and skipped on a rerun")
    assert len((out / "samples.jsonl").read_text().splitlines()) == 1 and not (out / "summary.md").exists()
    start_up = json.loads((out / "progress.json").read_text())["stages"]["seconds"]["start-up"]

    def ctrl_c_before_a_row(*arguments):
        raise KeyboardInterrupt

    # stopped again before its first row: that run's start-up is not added
    monkeypatch.setattr(evaluate_module, "evaluate_rows", ctrl_c_before_a_row)
    with pytest.raises(SystemExit):
        evaluate_module.main(["--split", "test-clean", "--limit", "3", "--model", str(tiny_model), "--out", str(out),
                              "--metadata-workers", "0"])
    assert json.loads((out / "progress.json").read_text())["stages"]["seconds"]["start-up"] == start_up
    monkeypatch.setattr(evaluate_module, "evaluate_rows", finish_rows)
    capsys.readouterr()
    evaluate_module.run("test-clean", 3, tiny_model, out, None, metadata_workers=0)
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert stages["samples"] == 3 and stages["seconds"]["start-up"] > start_up  # the finishing run's is added
    said = capsys.readouterr().out
    assert "; 2 evaluated in " in said and " s start-up, 1 in earlier runs (model pass: " in said


def test_evaluate_on_onnx_runtime_imports_no_tensorflow(tiny_model, tmp_path):
    """The default engine on a CPU runs the .h5 with ONNX Runtime: `evaluate` then imports neither Keras nor
    TensorFlow (~3 s of its start-up, ~1 s of its exit), here or in its metadata worker (which inherits
    WITHOUT_KERAS_ENV); --engine keras does."""
    script = ("import sys, os\n"
              "import librispeech\n"
              "from librispeech_tools import evaluate\n"
              "evaluate.main(sys.argv[1:])\n"
              "print(os.environ.get(librispeech.WITHOUT_KERAS_ENV),\n"
              "      sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))\n")
    from librispeech_tools.model_pass import accelerator_driver_present

    # with an accelerator driver, auto imports Keras to ask it for a GPU
    auto_imports = "['keras', 'tensorflow']" if accelerator_driver_present() else "[]"
    for engine, expected in (("auto", f"1 {auto_imports}"), ("keras", "None ['keras', 'tensorflow']")):
        result = subprocess.run([sys.executable, "-c", script, "--split", "test-clean", "--limit", "2", "--model",
                                 str(tiny_model), "--out", str(tmp_path / engine), "--engine", engine], cwd=REPO,
                                capture_output=True, text=True, timeout=600,
                                env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == expected


def test_the_command_skips_the_teardown_but_not_atexit_buffered_output_or_a_running_thread():
    """`evaluate` (cli) ends with end_process: os._exit skips the interpreter's teardown (~1 s of freeing objects
    after a run), after atexit handlers have run and buffered output is written. Where a thread that is not a daemon
    still runs (a pool left open), it exits as usual, so that nothing waits forever. The teardown deletes `kept`,
    whose __del__ writes."""
    script = ("import atexit, sys, threading, time\n"
              "from librispeech_tools.evaluate import end_process\n"
              "class Kept:\n"
              "    def __del__(self):\n"
              "        sys.stdout.write('teardown')\n"
              "kept = Kept()\n"
              "atexit.register(print, 'atexit ran')\n"
              "if sys.argv[1] != 'no thread':\n"
              "    threading.Thread(target=lambda: (time.sleep(0.5), sys.stdout.write('thread done '))).start()\n"
              "sys.stdout.write('buffered ')\n"
              "if sys.argv[1] != 'no end_process':\n"
              "    end_process()\n")
    outputs = {how: subprocess.run([sys.executable, "-c", script, how], cwd=REPO, capture_output=True, text=True,
                                   timeout=120, env={**os.environ, "TL_DISABLE_ANALYTICS": "true"})
               for how in ("no thread", "a thread", "no end_process")}
    assert [result.returncode for result in outputs.values()] == [0, 0, 0]
    assert outputs["no thread"].stdout == "buffered atexit ran\n"
    assert outputs["a thread"].stdout == outputs["no end_process"].stdout == "buffered thread done atexit ran\nteardown"


def test_plots_say_how_many_samples_they_leave_out():
    """A value matplotlib cannot draw (NaN, None; 0 on a logarithmic axis) leaves a point out of a plot: the
    heading says how many."""
    from librispeech_tools.plots import plotted

    table = pd.DataFrame({"x": [0.5, None, 0.0, 2.0, float("inf")], "y": [1.0, 2.0, 3.0, float("nan"), 5.0]})
    shown, note = plotted(table, ["x", "y"])
    assert shown.index.tolist() == [0, 2] and note == " (2 of 5 samples; 3 left out: no finite value)"
    shown, note = plotted(table, ["x", "y"], positive=["x"])
    assert shown.index.tolist() == [0] and note == (
        " (1 of 5 samples; 4 left out: no finite value, or one not above 0 on the log axis)")
    assert plotted(table.iloc[:1], ["x", "y"])[1] == ""


def test_a_run_refused_by_the_lock_leaves_the_folder_it_made_to_the_run_that_holds_it(tmp_path, monkeypatch):
    """Two runs started at once into a new folder: the one that made it but lost the lock must not remove it from
    under the other, which holds the lock and has not written yet."""
    import fcntl

    from librispeech.config import project_config
    from librispeech_tools import evaluate as evaluate_module
    from librispeech_tools.evaluate_errors import EvaluationError

    held = []
    make = evaluate_module.prepare_folder

    def made_then_taken(out):  # the other run takes the lock between this run's mkdir and its own lock
        made = make(out)
        held.append(os.open(out, os.O_RDONLY))
        fcntl.flock(held[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return made

    monkeypatch.setattr(evaluate_module, "prepare_folder", made_then_taken)
    out = tmp_path / "new-report"
    try:
        with pytest.raises(EvaluationError, match="another evaluate is writing into"):
            evaluate_module.run("dev-clean", 1, project_config().model_path, out, None)
        assert out.is_dir()
    finally:
        for handle in held:
            os.close(handle)
