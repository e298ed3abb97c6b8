"""The judge scores episodes while the simulation is still running, and scores reach the store and exports."""

from __future__ import annotations

import json
from pathlib import Path

from esc_eval.runs.store import Store
from esc_eval.testing.cli import esc_eval, write_config


async def test_scoring_overlaps_simulation(tmp_path: Path, shared: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server(delay=0.02)
    judge = await fake_server(delay=0.02, responder=lambda body: "Score: 3" if body["model"] != "overall-model" else "no idea")
    config = write_config(
        tmp_path / "run.toml", seeker_url=sim.base_url, supporters={"alpha": sim.base_url, "beta": sim.base_url},
        cards=shared / "test_en.json", rounds=3,
        extra=f'\n[judge]\nbase_url = "{judge.base_url}"\nmodel = "judge-model"\n\n[judge.models]\noverall = "overall-model"\n',
    )
    config.write_text(config.read_text().replace("concurrency = 8", "concurrency = 2"))
    store_path = tmp_path / "run.sqlite"
    result = await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor")
    assert result.returncode == 0, result.stderr

    store = Store.open(store_path, readonly=True)
    scores = store.scores()
    assert len(scores) == 6 * 7 and {s.status for s in scores} == {"ok"}
    assert {s.label for s in scores if s.dimension != "overall"} == {3}
    assert {(s.label, s.raw) for s in scores if s.dimension == "overall"} == {(-1, "no idea")}
    first_score = min(s.at for s in scores)
    last_episode_end = max(e.ended_at for e in store.episodes())
    assert first_score < last_episode_end, "scoring must start before the last episode ends"
    store.close_sync()

    out = tmp_path / "export"
    assert (await esc_eval("export", str(store_path), "--out", str(out))).returncode == 0
    score_file = json.loads((out / "score_alpha_en.json").read_text(encoding="utf-8"))
    assert list(score_file) == ["0", "1", "2"]
    assert score_file["0"]["fluency"] == 3 and score_file["0"]["overall"] == -1

    report = await esc_eval("report", str(store_path), "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = {tuple(r["group"].values()): r for r in json.loads(report.stdout)["rows"]}
    assert set(rows) == {("alpha",), ("beta",)}
    fluency = rows["alpha",]["scores"]["fluency"]
    assert fluency["value"] == 75.0 and fluency["n"] == 3
    overall = rows["alpha",]["scores"]["overall"]
    assert overall["value"] is None and overall["n_unparsed"] == 3
    table = await esc_eval("report", str(store_path), "--plot", str(tmp_path / "chart.png"))
    assert table.returncode == 0 and "Fluency" in table.stdout and "Humanoid" in table.stdout
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_resume_scores_episodes_a_crash_left_unscored(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    sim = await fake_server()
    judge = await fake_server(responder=lambda body: "Score: 4")
    config = write_config(tmp_path / "run.toml", seeker_url=sim.base_url, supporters={"s": sim.base_url}, rounds=1,
                          extra=f'\n[cards]\nlimit = 2\nlanguage = "en"\n\n[judge]\nbase_url = "{judge.base_url}"\nmodel = "j"\n')
    store_path = tmp_path / "run.sqlite"
    assert (await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor")).returncode == 0
    conn = Store.open(store_path)._conn  # noqa: SLF001 - forging a crash between an episode's end and its scores
    conn.execute("DELETE FROM scores WHERE episode_key=(SELECT key FROM episodes ORDER BY ordinal LIMIT 1) AND dimension IN ('tech', 'human')")
    conn.close()
    requests_before = len(judge.requests)
    again = await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor", "--resume")
    assert again.returncode == 0, again.stderr
    store = Store.open(store_path, readonly=True)
    assert len(store.scores()) == 2 * 7
    assert len(judge.requests) - requests_before == 2  # only the two missing dimensions: labels given are never asked for twice
    assert sim.requests and len(store.episodes(status="done")) == 2
    store.close_sync()


async def test_judge_samples_reach_the_store_and_the_report(tmp_path: Path, fake_server) -> None:  # type: ignore[no-untyped-def]
    """``[judge] samples = 3``: three labels per (episode, dimension), asked with seeds 0, 1, 2."""
    seeds: set[int] = set()

    def judge_answer(body: dict) -> str:  # type: ignore[type-arg]
        seeds.add(body["seed"])
        return f"Score: {body['seed'] + 1}"

    sim = await fake_server()
    judge = await fake_server(responder=judge_answer)
    config = write_config(tmp_path / "run.toml", seeker_url=sim.base_url, supporters={"s": sim.base_url}, rounds=1,
                          extra=f'\n[cards]\nlimit = 2\nlanguage = "en"\n\n[judge]\nbase_url = "{judge.base_url}"\nmodel = "j"\n'
                                "samples = 3\ntemperature = 0.7\n")
    store_path = tmp_path / "run.sqlite"
    result = await esc_eval("run", str(config), "--store", str(store_path), "--no-monitor")
    assert result.returncode == 0, result.stderr
    assert seeds == {0, 1, 2}
    store = Store.open(store_path, readonly=True)
    rows = store.final_scores()
    store.close_sync()
    assert len(rows) == 2 * 7 * 3
    assert sorted({(r.sample, r.label) for r in rows}) == [(0, 1), (1, 2), (2, 3)]
    report = await esc_eval("report", str(store_path), "--format", "json")
    data = json.loads(report.stdout)
    fluency = data["rows"][0]["scores"]["fluency"]
    assert data["judge_samples"] == 3 and fluency["n"] == 6 and fluency["n_episodes"] == 2 and fluency["n_missing"] == 0
    assert fluency["mean"] == 50.0                        # labels 1, 2, 3 on each episode
    assert fluency["judge_noise"]["var_judge"] == 625.0 and fluency["judge_noise"]["judge_share"] == 1.0
