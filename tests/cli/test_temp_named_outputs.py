"""A file named like nebula-build's temp files (`.NAME.nebula-tmp-…`) is what apply's
tidy deletes as a killed run's: an output so named was written, then deleted by the
next apply, and made again, on every run."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '[images.a]\nprompt = "x"\noutput = "{output}"\n'


@pytest.mark.parametrize("command", ["validate", "apply"])
@pytest.mark.parametrize("output", ["img/.a.nebula-tmp-1.png", ".x.nebula-tmp-/a.png"])
def test_an_output_named_like_a_temp_file_is_refused(project, run_cli, command, output):
    root = project({"images.toml": MANIFEST.replace("{output}", output)})
    code, _, err = run_cli(command)
    assert code == 1
    assert err.count("\n") == 1 and "images.a.output" in err and "temporary files" in err
    assert not (root / output).exists()
