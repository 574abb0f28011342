"""Report-card plots are readable: titles and axis labels set (checked on the matplotlib objects)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from olmoflow.flow import report
from olmoflow.flow.stages.curate import funnel_figure


def test_funnel_figure_has_title_labels_and_one_bar_per_step():
    rows = [("normalize", 60, 60, 1000, 990), ("gopher_quality", 60, 55, 990, 900), ("dedup", 55, 50, 900, 800)]
    fig = funnel_figure(rows, "curate: data funnel (documents kept per step)")
    ax = fig.axes[0]
    assert ax.get_title() == "curate: data funnel (documents kept per step)"
    assert ax.get_xlabel() == "documents kept after step" and ax.get_ylabel() == "curation step"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["normalize", "gopher_quality", "dedup"]
    assert [p.get_width() for p in ax.patches] == [60, 55, 50]
    plt.close(fig)


def test_sweep_grid_panels_have_a_step_axis_label(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(plt, "close", figs.append)
    ok = report.plot_grid(tmp_path / "g.png", {"arith_rc/acc": ([10, 20], [0.1, 0.2]),
                                                "ppl/bits_per_byte": ([10, 20], [3.5, 3.4])}, "eval: metrics over checkpoints")
    assert ok and (tmp_path / "g.png").is_file()
    (fig,) = figs
    used = [ax for ax in fig.axes if ax.get_title()]
    assert len(used) == 2 and all(ax.get_xlabel() == "training step" for ax in used)
    assert fig._suptitle.get_text() == "eval: metrics over checkpoints"
