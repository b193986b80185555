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
        assert r["fit_time"] > 0 and r["model"] in text
    acc = {r["model"]: r["accuracy"] for r in results}
    best_single = max(r["accuracy"] for r in results if r["family"] == "single")
    # Floors a few points under the quick run's measurements (seed 0, 2-core CPU):
    # image only 0.642, audio only 0.475, concat 0.683, product of the cross-fitted
    # class probabilities 0.733.
    assert best_single > 0.60
    assert acc["fuser concat + SVC"] > best_single + 0.02
    assert acc["fuser product (proba) + SVC"] > best_single + 0.06
    assert "Which fusion when:" in text
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out
