import io

import pytest

from skmm.demo import main, run


@pytest.mark.slow
def test_quick_demo_runs_and_fusion_helps(tmp_path):
    out = io.StringIO()
    results = run(tmp_path, seed=0, quick=True, out=out)
    text = out.getvalue()
    families = {r["family"] for r in results}
    assert families == {"single", "feature", "decision", "end-to-end"}
    for r in results:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["fit_time"] > 0
        assert r["model"] in text
    best_single = max(r["accuracy"] for r in results if r["family"] == "single")
    best_fused = max(r["accuracy"] for r in results if r["family"] != "single")
    assert best_fused > best_single
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out
