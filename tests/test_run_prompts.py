"""``ppsd run`` and ``ppsd profile`` on the user's prompts and trained heads (issue 13 §2, §4):
the prompt decoded is the one given, the continuation shown is AR's, a heads folder drafts
(run) or is timed (profile), and every misuse is one line naming the flag, exit 2, before
any weights load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppsd_real.model_loading import SHIPPED_MODEL
from ppsd_sim.cli.main import main

MODEL = str(SHIPPED_MODEL)
pytestmark = pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model absent")


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_decodes_the_given_prompt_and_shows_ar_text(capsys) -> None:
    from ppsd_real import prompts
    from ppsd_real.decoders import ARDecoder
    from ppsd_real.model_loading import ModelSpec
    from ppsd_real.runner import load

    text = "def wrap(text, width):\n"
    code, out, _ = _run(
        [
            "run",
            "--prompt",
            text,
            "--tokens",
            "12",
            "--repeats",
            "1",
            "--scheme",
            "eesd",
            "--exit",
            "3",
            "--show-text",
        ],
        capsys,
    )
    assert code == 0
    tok = prompts.load_tokenizer(MODEL)
    ids = prompts.load_prompts(MODEL, text, None, "auto")[0].ids
    m = load(ModelSpec(preset=None, path=MODEL))
    want = prompts.decode(tok, ARDecoder(m.driver).decode(list(ids), 12).tokens)
    assert f"--- --prompt: {len(ids)} prompt tokens" in out
    assert out.rstrip().endswith(want.rstrip())


def test_run_drafts_with_a_heads_folder(capsys, tmp_path: Path) -> None:
    rec = tmp_path / "eesd.json"
    code, out, _ = _run(
        [
            "run",
            "--heads",
            MODEL,
            "--tokens",
            "8",
            "--repeats",
            "1",
            "--scheme",
            "eesd",
            "--exit",
            "2",
            "--output",
            str(rec),
        ],
        capsys,
    )
    assert code == 0
    assert "ee_head_exit2.safetensors" in out
    assert json.loads(rec.read_text())["record"] == "RunRecord"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--heads", MODEL, "--shared-head"], "--heads"),
        (["run", "--heads", "/nonexistent-heads"], "--heads"),
        (["run", "--preset", "tiny", "--heads", MODEL], "--heads"),
        (["run", "--preset", "tiny", "--prompt", "hi"], "--prompt"),
        (["profile", "--no-stages", "--show-text"], "--show-text"),
        (
            ["profile", "--no-stages", "--model-dir", MODEL, "--prompt", "x", "--context", "4"],
            "--context",
        ),
        (["profile", "--no-stages", "--context", "0"], "--context"),
    ],
)
def test_misuse_is_one_line_naming_the_flag(
    argv, flag, capsys, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _run([*argv, "--output", str(tmp_path / "o.json")], capsys)
    assert code == 2
    assert err.startswith(f"ppsd: error: {flag}") and err.count("\n") == 1, err
    assert not (tmp_path / "o.json").exists()


def test_run_refuses_a_prompt_file_of_many(capsys, tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a = 1"}\n{"prompt": "b = 2"}\n', encoding="utf-8")
    code, _, err = _run(["run", "--prompt-file", str(f)], capsys)
    assert code == 2 and "holds 2 prompts" in err


def test_profile_at_the_prompt_context_with_a_trained_head(capsys, tmp_path: Path) -> None:
    from ppsd_real import prompts

    out = tmp_path / "p.json"
    text = "import os\nimport sys\n"
    code, _, _ = _run(
        [
            "profile",
            "--model-dir",
            MODEL,
            "--heads",
            MODEL,
            "--prompt",
            text,
            "--no-stages",
            "--repeats",
            "5",
            "--output",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    d = json.loads(out.read_text())
    notes = json.loads(d["provenance"]["notes"])
    n = len(prompts.load_prompts(MODEL, text, None, "auto")[0].ids)
    assert notes["cached_tokens"] == n
    assert "trained head" in notes["ee_head"]
    # the trained head has the LM head's shape: its cost is the LM head's within noise
    assert 0.5 < d["ee_head"]["median"] / d["final_head"]["median"] < 2.0
