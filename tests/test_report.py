"""The HTML report of a real small ring search, and the listening section on real WAV files."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.report import PAPER_DEFAULT, REPORT_NAME, default_point_trial
from harness.report.listening import Listened, listening_html
from harness.results.leaderboard import ranking
from harness.results.trials import read_trials


class Page(HTMLParser):
    """What the structure tests need of a page: elements with their attributes, script sizes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[int] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append(0)

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += len(data)

    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.elements if "id" in attrs}


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_search_ends_by_writing_its_report(ring_search):
    folder, out = ring_search
    path = folder.path / REPORT_NAME
    assert f"report: {path}" in out
    assert path.is_file()


def test_report_has_every_section_and_every_trial(ring_search):
    folder, _ = ring_search
    code, out = cli("report", folder.name, "--results", str(folder.path.parent))
    assert code == 0 and out.strip() == str(folder.path / REPORT_NAME)
    text = (folder.path / REPORT_NAME).read_text()
    page = Page(text)
    assert {"leaderboard", "course", "trials", "listening"} <= page.ids()
    trials = read_trials(folder)
    statuses = set(trials["status"])
    assert "completed" in statuses and "stopped" in statuses  # the search ended in several ways
    rows = [attrs.get("class") for tag, attrs in page.elements if tag == "tr"]
    assert sorted(r for r in rows if r) == sorted(trials["status"])  # one row per trial
    for trial_id in trials["trial_id"]:
        assert f">{trial_id}<" in text  # in the leaderboard
    # best three and the paper default in detail, linked from the leaderboard
    ranked = ranking(folder)
    default = default_point_trial(ranked)
    chosen = set(ranked.trials["trial_id"][:3]) | {default}
    assert {i.removeprefix("trial-") for i in page.ids() if i.startswith("trial-")} == chosen
    assert all(f'href="#trial-{t}"' in text for t in chosen)
    assert f"{default} ({PAPER_DEFAULT})" in text
    # every figure drawn: the course, Optuna's plots, one per chosen trial
    figures = [a["id"] for tag, a in page.elements if tag == "div" and "fig-" in a.get("id", "")]
    assert len(figures) >= 1 + 3 + len(chosen)
    assert all(f'Plotly.newPlot("{f}"' in text for f in figures)
    assert "optimisation history" in text and "parameter importances" in text
    if (trials["status"] == "completed").sum() < 4:  # as importances.json
        assert "not drawn: needs 4+ completed trials" in text
    assert "Nothing to listen to" in text and "the ring recipe writes none" in text
    # self-contained: plotly.js once, inline; nothing fetched from anywhere
    assert sum(size > 1_000_000 for size in page.scripts) == 1
    for tag, attrs in page.elements:
        assert tag not in ("link", "iframe", "img") and not (tag == "script" and "src" in attrs)
        for url in (attrs.get("src"), attrs.get("href")):
            assert url is None or url.startswith(("#", "data:")), (tag, url)


def test_paper_default_is_the_trial_of_the_first_point(ring_search):
    folder, _ = ring_search
    trials = read_trials(folder)
    first = trials[(trials["config/loss_upper_limit"] == 1e6) & (trials["config/lr_g"] == 3e-3)]
    assert len(first) == 1
    assert json.loads(first.iloc[0]["sample"])["pack"] == 1
    assert default_point_trial(ranking(folder)) == first.iloc[0]["trial_id"]


def test_report_of_chosen_trials_and_unknown_trial_is_one_line_error(ring_search, capsys):
    folder, _ = ring_search
    results = str(folder.path.parent)
    trials = read_trials(folder)
    last = trials.sort_values("trial_id")["trial_id"].iloc[-1]
    code, _ = cli("report", folder.name, "--results", results, "--trials", last)
    assert code == 0
    page = Page((folder.path / REPORT_NAME).read_text())
    assert {i for i in page.ids() if i.startswith("trial-")} == {f"trial-{last}"}
    before = (folder.path / REPORT_NAME).read_bytes()
    assert main(["report", folder.name, "--results", results, "--trials", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --trials nope: no such trial")
    assert (folder.path / REPORT_NAME).read_bytes() == before  # nothing half-written


def _clip(path: Path, seconds: float, hz: float, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t), rate, subtype="PCM_16")


def test_listening_embeds_within_budget_then_links_existing_files(tmp_path):
    report_dir = tmp_path / "search"
    chosen = []
    for n, trial in enumerate(("t1", "t2")):
        samples = report_dir / "trials" / trial / "samples"
        for folder in ("reference", "step_00000100", "step_00000200", "step_00000300"):
            (samples / folder).mkdir(parents=True)
            for clip in ("LJ001", "LJ002"):
                _clip(samples / folder / f"{clip}.wav", 1.0, 220.0 * (n + 1) + len(folder))
        chosen.append(Listened(trial, f"#{n + 1} {trial}", samples))
    body = listening_html(chosen, report_dir, "hifigan", audio_budget=150_000)
    page = Page(body)
    sources = [a["src"] for tag, a in page.elements if tag == "audio"]
    # per clip: the reference, then early (step 100) and newest (step 300) of each trial
    assert len(sources) == 2 * (1 + 2 * 2)
    assert "early: step 100" in body and "newest: step 300" in body and "step 200" not in body
    embedded = [s for s in sources if s.startswith("data:audio/wav;base64,")]
    linked = [s for s in sources if not s.startswith("data:")]
    assert embedded and linked  # 150 kB holds three of the 44 kB clips
    for source in embedded:
        audio, rate = sf.read(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert rate == 22050 and len(audio) == 22050
    for source in linked:
        assert not Path(source).is_absolute() and (report_dir / source).is_file()
    assert f"{len(linked)} clips are linked" in body
    assert body.count('"type":"heatmap"') == len(sources)  # a spectrogram beside every player


def test_report_of_a_search_without_diagnostics_or_trials(tmp_path):
    from test_leaderboard import make_search

    from harness.report import write_report
    from harness.results.folder import SearchFolder
    from harness.results.plan import SearchPlan

    folder = make_search(tmp_path)  # a trials table only: no diagnostics, samples or study
    text = write_report(folder).read_text()
    assert text.count("no diagnostics rows") == 3 and "Nothing to listen to" in text
    assert "no Optuna study" in text and "collapse,overpower" in text
    empty = SearchFolder(tmp_path / "empty")
    dataclasses.replace(SearchPlan.load(folder), name="empty").save(empty)  # no trial yet
    page = Page(write_report(empty).read_text())
    assert {"leaderboard", "course", "trials", "listening"} <= page.ids()


def test_optuna_figures_of_a_multi_objective_study(tmp_path):
    import optuna

    from harness.results.folder import SearchFolder
    from harness.results.plan import SearchPlan
    from harness.search.figures import study_figures

    folder = SearchFolder(tmp_path / "multi")
    plan = SearchPlan(
        name="multi", recipe="ring", budget="smoke", space_file="ring.yaml", space={},
        swept=["lr_g"], objective="reverse_kl", mode="min", trials=6, multi_objective=True,
    )  # fmt: skip
    plan.save(folder)
    study = optuna.create_study(
        study_name="multi",
        storage=f"sqlite:///{folder.optuna_db}",
        directions=["minimize", "minimize"],
    )
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for i in range(6):
        trial = optuna.trial.create_trial(
            params={"lr_g": 1e-4 * 2**i},
            distributions={"lr_g": lr},
            values=[abs(i - 3) / 3, 1000.0 + 100 * i],
            user_attrs={"trial_id": f"t{i}"},
        )
        study.add_trial(trial)
    figures, numbers = study_figures(folder, plan)
    assert numbers == {i: f"t{i}" for i in range(6)}
    drawn = {title for title, fig in figures.items() if not isinstance(fig, str)}
    assert {"optimisation history", "parameter importances (PED-ANOVA)", "Pareto front"} <= drawn
    pareto = figures["Pareto front"]
    assert sum(len(trace.x) for trace in pareto.data) == 6
    history = figures["optimisation history"].data[0]
    assert list(history.y) == pytest.approx([abs(i - 3) / 3 for i in range(6)])  # the objective
    assert figures["intermediate values (validations)"].startswith("not drawn")  # none reported
