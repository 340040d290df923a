"""Sampling in the real runner: one seed, one output on every backend; the RunRecord says how it
was decoded and carries both acceptances; bad sampling flags are one line, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec
from ppsd_real.backends.sequential import SequentialBackend
from ppsd_real.decoders import ARDecoder, EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec
from ppsd_real.measure import observed
from ppsd_real.sampling import SamplingSpec
from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import RunRecord, SchemeConfig, read_record
from tests.real_fixtures import TINY, reference, tiny_driver

PROMPT = [1, 5, 7, 9]
N = 30
# top-k 20 on the random tiny model: Σ min(p, q) ≈ 0.7, a dozen flushes in 30 tokens
SPEC = SamplingSpec(1.0, 20, 1.0, 11)
# exit at stage 2 of 3: drafts and verdicts race to stage 0 (a verdict may wait for its draft)
SCHEME = SchemeConfig.ppsd((1, 3, 4), exit_stage=2)


def test_one_seed_gives_one_output_on_every_backend():
    seq = SequentialBackend(tiny_driver(), SCHEME)
    want = seq.run(PROMPT, N, DrafterSpec(), None, SPEC)
    assert 0 < sum(want.trace) < len(want.trace) and want.flushes > 0  # both outcomes happen
    assert len(want.expected) == len(want.trace)
    # the sequential backend without run-ahead schedules the stages differently: same output
    lockstep = SequentialBackend(tiny_driver(), SCHEME, run_ahead=False)
    assert lockstep.run(PROMPT, N, DrafterSpec(), None, SPEC).tokens == want.tokens
    with DistributedBackend(PipelineSpec(TINY, SCHEME, transport="pipe"), timeout_s=60) as be:
        got = be.run(PROMPT, N, DrafterSpec(), None, SPEC)
        other = be.run(PROMPT, N, DrafterSpec(), None, SamplingSpec(1.0, 20, 1.0, 12))
        greedy = be.run(PROMPT, N, DrafterSpec(), list(reference(tuple(PROMPT), N)))
    assert got.tokens == want.tokens and got.trace == want.trace
    # the stages' processes may sum in another order: the same draws, equal to rounding
    assert got.expected == pytest.approx(want.expected, abs=1e-6)
    assert other.tokens != want.tokens  # the seed matters
    assert greedy.tokens == list(reference(tuple(PROMPT), N))  # greedy: still AR's tokens
    # AR and EESD: the seed fixes the output; another seed changes it
    d, drafter = tiny_driver(), Drafter(DrafterSpec(), 256)
    for make in (lambda s: ARDecoder(d, s), lambda s: EESDDecoder(d, 2, 3, drafter, spec=s)):
        a, b = make(SPEC).decode(PROMPT, N), make(SPEC).decode(PROMPT, N)
        assert a.tokens == b.tokens and a.trace == b.trace
        assert make(SamplingSpec(1.0, 20, 1.0, 12)).decode(PROMPT, N).tokens != a.tokens


def test_oracle_drafter_is_refused_when_sampling():
    with pytest.raises(ConfigError) as err:
        SequentialBackend(tiny_driver(), SCHEME).run(
            PROMPT, 4, DrafterSpec("oracle", 0.5), [1, 2, 3, 4], SPEC
        )
    assert err.value.field == "--drafter"


def test_observed_acceptance_realised_and_expected():
    res = EESDDecoder(tiny_driver(), 2, 3, Drafter(DrafterSpec(), 256), spec=SPEC).decode(PROMPT, N)
    obs = observed(res)
    assert obs.rate == sum(res.trace) / len(res.trace)
    assert obs.expected == pytest.approx(sum(res.expected) / len(res.expected))
    assert len(obs.expected_per_position) == len(obs.per_position)
    # greedy: one-hot p and q, so each Σ min(p, q) is the 0/1 outcome
    g = EESDDecoder(
        tiny_driver(),
        2,
        3,
        Drafter(DrafterSpec("oracle", 0.6, 1), 256, list(reference(tuple(PROMPT), N))),
    ).decode(PROMPT, N)
    og = observed(g)
    assert og.expected == og.rate and og.expected_per_position == og.per_position


def test_records_without_sampling_read_as_greedy(tmp_path):
    rec = RunRecord("measured", "real/sequential", SchemeConfig.ar(), 3, 1.0, sampling=SPEC)
    back = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.sampling == SPEC
    old = rec.to_dict()
    del old["sampling"]
    assert RunRecord.from_dict(old).sampling.greedy
    old["sampling"] = {"temperature": 1.0, "top_p": 1.5}
    with pytest.raises(ConfigError) as err:
        RunRecord.from_dict(old)
    assert err.value.field == "sampling.top_p"


def _ppsd(*argv: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", "run", *argv]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


BAD = [
    (["--temperature", "-0.5"], "--temperature: must be a finite number >= 0"),
    (["--temperature", "nan"], "--temperature: must be a finite number >= 0"),
    (["--temperature", "1", "--top-p", "0"], "--top-p: must be in (0, 1]"),
    (["--temperature", "1", "--top-p", "1.5"], "--top-p: must be in (0, 1]"),
    (["--temperature", "1", "--top-k", "0"], "--top-k: must be an integer >= 1"),
    (["--temperature", "1", "--seed", "1.5"], "argument --seed: invalid int value"),
    (["--temperature", "1", "--seed", "-1"], "--seed: must be in [0, 2**63 - 1]"),
    (["--top-p", "0.9"], "--top-p: has no effect at temperature 0"),
    (["--temperature", "1", "--drafter", "oracle"], "--drafter: oracle is greedy only"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD)
def test_bad_sampling_flags_are_one_line_exit_2(argv, needle, capsys):
    """In process (the CLI's own main): each is refused before a model is loaded."""
    try:
        code = main(["run", "--preset", "tiny", *argv])
    except SystemExit as stop:  # argparse's own refusals (a seed that is not an integer)
        code = stop.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_a_bad_sampling_flag_through_the_installed_entry_point_is_one_line():
    p = _ppsd("--preset", "tiny", "--temperature", "1", "--top-p", "0")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and err.strip().splitlines() == [
        line for line in err.strip().splitlines() if "--top-p: must be in (0, 1]" in line
    ], err


def test_run_samples_and_records_how(tmp_path):
    p = _ppsd(
        "--preset",
        "tiny",
        "--tokens",
        "12",
        "--repeats",
        "1",
        "--temperature",
        "1",
        "--top-k",
        "20",
        "--seed",
        "11",
        "--backend",
        "sequential",
        "--records",
        str(tmp_path),
    )
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "decoding T=1 top-k=20 seed=11" in out and "expected" in out
    for name in ("ar", "eesd", "ppsd"):
        rec = read_record(tmp_path / f"{name}.json", RunRecord)
        assert rec.sampling == SamplingSpec(1.0, 20, 1.0, 11) and rec.tokens == 12
        if name != "ar":
            obs = rec.acceptance_observed
            assert obs is not None and obs.expected is not None and 0 < obs.expected <= 1
