"""Bad input is refused with a ConfigError naming the field; via the CLI: one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.runner import check_scheme
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: check_scheme(SchemeConfig.eesd(4, 3), 4), "scheme.exit_layer"),
        (lambda: check_scheme(SchemeConfig.ppsd((1, 3)), 4), "scheme.stage_boundaries"),
        # simulator-only baselines: without the refusal PP-AR would run as PPSD, mislabelled
        (lambda: check_scheme(SchemeConfig.pp_ar((2, 4)), 4), "scheme.kind"),
        (lambda: check_scheme(SchemeConfig.tp_ar(2), 4), "scheme.kind"),
        (lambda: DrafterSpec("oracle", 1.5), "drafter.alpha"),
        (lambda: DrafterSpec("oracle", -0.1), "drafter.alpha"),
        (lambda: ModelSpec(preset=None, path="/nonexistent/model"), "model.path"),
        (lambda: ModelSpec("no-such-preset"), "model.preset"),
    ],
)
def test_refused_with_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "no-such-preset"], "model.preset"),
        (["--model-dir", "/nonexistent/model"], "model.path"),
        (["--preset", "tiny", "--alpha", "2"], "drafter.alpha"),
        (["--preset", "tiny", "--exit", "4"], "exit"),
    ],
)
def test_cli_refuses_in_one_line(argv: list[str], needle: str) -> None:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", "run", *argv, "--tokens", "4"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr
