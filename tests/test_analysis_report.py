"""The report builds from the example and from a folder holding one of each record type; a
malformed record is named and skipped and the report still completes; the CLI refuses bad
input with one line and exit code 2."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.cli_report import run as report_run
from analysis.curves import AcceptanceCurve
from analysis.report_build import build_report
from analysis.report_write import write_report
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_acceptance, example_profile, example_schemes
from ppsd_sim.predict import predict_run
from ppsd_sim.records.io import read_record, write_record
from ppsd_sim.records.profile import Provenance
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.simulate import simulate
from ppsd_sim.trace_export import chrome_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_from_the_embedded_example(tmp_path: Path):
    html_path, md_path = write_report(build_report(sim_tokens=2000), tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    imgs = _images(page)
    assert len(imgs) == 4 and all(i.startswith(PNG_MAGIC) for i in imgs)  # 2 heatmaps, b-e, gantt
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for title in (
        "Profiles and provenance",
        "Capacity plan",
        "Reproduction",
        "PPSD stage timeline",
    ):
        assert title in page
    assert "illustrative" in page and 'class="t t-example"' in page
    md = md_path.read_text(encoding="utf-8")
    assert md.count("](figures/") == 4
    assert all(
        (tmp_path / "out" / "figures" / f).exists() for f in re.findall(r"figures/(\S+\.png)", md)
    )
    assert "No record was skipped." in md
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _folder_with_everything(root: Path) -> None:
    prof = example_profile()
    measured = prof.with_costs(provenance=Provenance(source="measured", device="test rig"))
    write_record(root / "profile.json", measured)
    sim = simulate(measured, example_schemes()[2], example_acceptance(), tokens=2000, engine="auto")
    write_record(root / "sim_run.json", sim.record)
    meas = RunRecord(
        origin="measured",
        engine="sequential",
        scheme=example_schemes()[2],
        tokens=200,
        time_s=200 / 100.0,
        acceptance=example_acceptance(),
        profile=measured,
        speedups={"ar_1thread": 1.5},
        baseline="ar_1thread",
    )
    write_record(root / "runs" / "measured_run.json", meas)
    tl = simulate(
        measured,
        example_schemes()[2],
        example_acceptance(),
        tokens=12,
        engine="simpy",
        timeline=True,
    )
    trace = chrome_trace(tl.spans, example_schemes()[2], title="real runner", origin="measured")
    (root / "trace.json").write_text(json.dumps(trace), encoding="utf-8")
    write_record(root / "curve.json", AcceptanceCurve((4, 8, 16), (0.4, 0.6, 0.8), "measured"))


def test_report_from_a_folder_with_one_of_each(tmp_path: Path):
    _folder_with_everything(tmp_path / "rec")
    report = build_report(tmp_path / "rec", sim_tokens=2000)
    assert report.skipped == []
    html_path, md_path = write_report(report, tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert "Predicted vs measured" in page and "runs/measured_run.json" in page
    assert "measured: real runner" in page  # the measured Gantt panel
    assert len(_images(page)) == 5  # + predicted-vs-measured scatter
    md = md_path.read_text(encoding="utf-8")
    # measured 1.5× against ppsd_sim.predict's prediction: the signed error pred ÷ meas − 1
    row = next(
        line
        for line in md.splitlines()
        if line.startswith("| runs/measured_run.json") and "%" in line
    )
    run = read_record(tmp_path / "rec" / "runs" / "measured_run.json", RunRecord)
    pred = predict_run(run, tokens=2000).speedup
    assert "| 1.500 `M` | ar_1thread |" in row
    assert f"| {pred:.3f} `P` | {pred / 1.5 - 1:+.1%} `P` |" in row
    assert "measured α(E)" in md  # the folder's curve, not the illustrative one


def test_malformed_records_are_named_and_skipped(tmp_path: Path):
    rec = tmp_path / "rec"
    _folder_with_everything(rec)
    (rec / "broken.json").write_text('{"record": "RunRecord", ', encoding="utf-8")
    bad = json.loads((rec / "profile.json").read_text())
    bad["layer_decode"][0] = -1.0
    (rec / "negative.json").write_text(json.dumps(bad), encoding="utf-8")
    (rec / "other.json").write_text('{"record": "Mystery"}', encoding="utf-8")
    report = build_report(rec, sim_tokens=2000)
    names = {n for n, _ in report.skipped}
    assert names == {"broken.json", "negative.json", "other.json"}
    why = dict(report.skipped)
    assert "malformed JSON" in why["broken.json"] and "layer_decode[0]" in why["negative.json"]
    html_path, _ = write_report(report, tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>") and "negative.json" in page
    assert "Predicted vs measured" in page  # the good records are still used


def test_cli_report_writes_and_prints_paths(tmp_path: Path, capsys):
    import argparse

    from analysis.cli_report import configure

    p = argparse.ArgumentParser()
    configure(p)
    rc = report_run(p.parse_args(["--out", str(tmp_path / "r"), "--sim-tokens", "1000"]))
    out = capsys.readouterr().out
    assert rc == 0 and f"report: {(tmp_path / 'r' / 'report.html').resolve()}" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report", "/nonexistent/folder"], "records: not a folder"),
        (["report", "--gamma", "0"], "--gamma"),
        (["plan", "--devices", "0"], "--devices"),
        (["plan", "--curve", "8:1.5"], "--curve"),
        (["plan", "--profile", "/nonexistent.json"], "--profile"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path: Path):
    res = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("ppsd: error:")


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_report_out_that_cannot_be_written_is_refused_before_building(tmp_path: Path, where):
    (tmp_path / "f").write_text("keep", encoding="utf-8")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anywhere: take a folder the kernel keeps read-only
        ro = Path("/proc/sys")
        if where == "read_only" and os.access(ro, os.W_OK):
            pytest.skip("no read-only folder to try")
    out = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "r", "read_only": ro / "r"}[where]
    try:
        res = subprocess.run(
            [sys.executable, "-m", "ppsd_sim.cli.main", "report", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        (tmp_path / "ro").chmod(0o755)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("ppsd: error: --out:")
    assert (tmp_path / "f").read_text(encoding="utf-8") == "keep" and not (ro / "r").exists()


def test_report_files_are_replaced_all_or_none(tmp_path: Path):
    out = tmp_path / "out"
    write_report(build_report(sim_tokens=500), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "figures" / "timeline.png").unlink()
    (out / "figures" / "timeline.png").mkdir()  # one output that cannot be replaced
    with pytest.raises(ConfigError, match=r"--out: .*timeline.png is a folder"):
        write_report(build_report(sim_tokens=600), out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {p: b for p, b in before.items() if p.name != "timeline.png"}
    assert not list(out.rglob(".*.tmp"))
