"""report.html: self-contained, escaped, every table number links to its samples, and it renders in Chromium.

The run folder is crafted in tmp_path (manifest, summary from harness.analysis.summary.summarize, samples), so
nothing here loads a model or depends on results/. The Chromium tests are skipped when no chromium is
installed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from harness.errors import ConjugateError
from harness.analysis.summary import summarize
from harness.outputs.views.samples import MAX_TEXT
from harness.outputs.write import report_files, write_views
from harness.types import Sample

TRANSFORMS = ["identity", "lang:fr", "leetspeak"]
LABELS = {"icl_vs_if": ("icl", "if", "other"), "refusal": ("refuse", "answer", "ambiguous")}
PRIMARY = {"icl_vs_if": "icl", "refusal": "refuse"}
XSS = "<script>alert(1)</script>"


def outcome_for(task: str, model: str, transform: str, i: int) -> str:
    """Deterministic outcomes with different rates per cell."""
    labels = LABELS[task]
    shift = {"pretrained": 0, "finetuned": 1}[model] + TRANSFORMS.index(transform)
    return labels[(i * (shift + 1) + shift) % 3]


def make_samples() -> list[Sample]:
    samples = []
    for task, n in (("icl_vs_if", 12), ("refusal", 6)):
        for transform in TRANSFORMS:
            if task == "refusal" and transform == "lang:fr":
                continue
            for i in range(n):
                group = ("capslock-math", "repeat-startblank")[i % 2] if task == "icl_vs_if" else "all"
                prompt = f"{task} prompt {i} in {transform}\nOutput:"
                for model in ("pretrained", "finetuned"):
                    s = Sample(model=model, task=task, transform=transform, example_id=f"{group}-{i:03d}", group=group,
                               mode="native", prompt=prompt,
                               transformed_prompt=prompt if transform != "leetspeak" else prompt.replace("e", "3"),
                               reference={"icl_answer": "WHAT", "if_answer": str(i)},
                               response=f" answer {i} of {model}", inverted=f" answer {i} of {model}",
                               outcome=outcome_for(task, model, transform, i), detail="", cached=True)
                    samples.append(s)
    # the cases the page has to survive
    samples[0].response = samples[0].inverted = XSS  # model output is arbitrary text
    samples[1].response = "x" * (MAX_TEXT + 500)
    samples[1].inverted = samples[1].response
    samples[2].outcome, samples[2].error, samples[2].response = "error", "backend failed: </script><b>boom</b>", None
    return samples


def make_summary(samples: list[Sample], extended: bool = True) -> dict:
    """summarize()'s summary; ``extended=False`` strips it to what older runs had (rows, recovery without CI)."""
    summary = summarize(samples, LABELS, PRIMARY, TRANSFORMS)
    if not extended:
        for r in summary["recovery"]:
            r.pop("ci", None)
            r.pop("ci_method", None)
        return {"rows": summary["rows"], "recovery": summary["recovery"]}
    summary.setdefault("agreement", [
        {"task": "icl_vs_if", "transform": t, "group": "all", "n": 12, "ft_T_vs_pt_T": 0.5, "ft_T_vs_pt_T_ci": [0.25, 0.75],
         "ft_T_vs_pt_en": 0.25, "ft_T_vs_pt_en_ci": [0.1, 0.5]} for t in TRANSFORMS])
    summary.setdefault("tests", [
        {"task": "icl_vs_if", "kind": "transform", "model": "finetuned", "a": "identity", "b": "lang:fr", "n": 12,
         "a_only": 3, "b_only": 1, "test": "McNemar exact (two-sided binomial on discordant pairs)", "p": 0.625, "p_holm": 1.0},
        {"task": "icl_vs_if", "kind": "model", "transform": "leetspeak", "a": "pretrained", "b": "finetuned", "n": 12,
         "a_only": 5, "b_only": 0, "test": "McNemar exact (two-sided binomial on discordant pairs)", "p": 0.0625, "p_holm": 0.125}])
    summary["probe"] = [{"task": "icl_vs_if", "model": m, "transform": t, "group": "all", "n": 12, "mean": 0.3 + 0.1 * j,
                         "lo": 0.2 + 0.1 * j, "hi": 0.4 + 0.1 * j, "ci_method": "bootstrap"}
                        for j, t in enumerate(TRANSFORMS) for m in ("pretrained", "finetuned")]
    summary["probe_correlation"] = [{"task": "icl_vs_if", "spearman": 0.8, "p": 0.05, "n_cells": 6}]
    return summary


def make_manifest() -> dict:
    return {
        "run_id": "crafted",
        "spec": {"pretrained": {"name": "pt-model", "model": "org/pt", "backend": "hf", "dtype": "float32"},
                 "finetuned": {"name": "ft-model", "model": "org/pt", "adapter": "adapters/ft", "backend": "hf"},
                 "tasks": ["icl_vs_if", "refusal"], "transforms": TRANSFORMS, "limit": 12, "seed": 0},
        "started": "2026-01-01T00:00:00+0000", "seconds": 1.0, "versions": {"python": "3.11"},
        "generation": {"pretrained": {"generated": 1, "cached": 2, "failed": 0}},
        "notes": ["a note with <b>markup</b> & an ampersand"],
        "task_labels": {t: list(l) for t, l in LABELS.items()}, "primary_labels": PRIMARY,
    }


def write_run(folder: Path, samples: list[Sample], summary: dict, manifest: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples.jsonl").write_text("".join(s.to_json() + "\n" for s in samples), encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")  # NaN as Python writes it
    (folder / "manifest.json").write_text(json.dumps(manifest or make_manifest()), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    samples = make_samples()
    folder = write_run(tmp_path_factory.mktemp("run") / "crafted", samples, make_summary(samples))
    lines = [json.loads(s.to_json()) for s in samples]
    for d in lines[:10]:  # newer runs carry the log-likelihood probe on each sample
        d["probe"] = {"logp_icl": -1.5, "logp_if": -2.0, "p_icl": 0.62}
    (folder / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
    write_views(folder)
    return folder


@pytest.fixture(scope="module")
def html(run_dir) -> str:
    return (run_dir / "report.html").read_text(encoding="utf-8")


def sample_json(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="samples-data">(.*?)</script>', html, re.S)
    assert m, "no sample JSON block"
    return json.loads(m.group(1))


class Links(HTMLParser):
    """(href, text, table class) of every <a> inside a <table>, and every table cell's text."""

    def __init__(self):
        super().__init__()
        self.links, self.cells, self.tables = [], [], []
        self._a = None
        self._td = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("class") or "")
        elif tag == "td" and self.tables:
            self._td = {"text": "", "linked": "", "cls": attrs.get("class") or "", "table": self.tables[-1]}
        elif tag == "a" and self._td is not None:
            self._a = {"href": attrs.get("href"), "text": "", "table": self.tables[-1]}

    def handle_endtag(self, tag):
        if tag == "a" and self._a is not None:
            self.links.append(self._a)
            self._a = None
        elif tag == "td" and self._td is not None:
            self.cells.append(self._td)
            self._td = None
        elif tag == "table" and self.tables:
            self.tables.pop()

    def handle_data(self, data):
        if self._td is not None:
            self._td["text"] += data
            if self._a is not None:
                self._td["linked"] += data
        if self._a is not None:
            self._a["text"] += data


def parse_links(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


def select(samples: list[dict], href: str) -> list[dict]:
    """The samples a '#samples?...' link selects, with the sample browser's rules (comma = any of)."""
    assert href.startswith("#samples"), href
    q = {k: v[0] for k, v in parse_qs(urlsplit(href[1:]).query).items()}
    keys = {"task": "t", "transform": "x", "model": "m", "group": "g", "outcome": "o", "example": "e"}
    out = []
    for s in samples:
        if all(k not in q or str(s.get(short)) in q[k].split(",") for k, short in keys.items()):
            out.append(s)
    return out


# -- the file -------------------------------------------------------------------------------

def test_self_contained(html):
    refs = re.findall(r'\b(?:src|href|action|poster|data)\s*=\s*["\']?([^"\'\s>]+)', html, re.I)
    assert refs, "expected some links and images"
    external = [r for r in refs if re.match(r"(?i)(https?:)?//", r) or re.match(r"(?i)(ftp|file):", r)]
    assert not external, external
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<link\b|<script[^>]*\bsrc=|@import|url\(", html, re.I)
    imgs = re.findall(r'<img[^>]*\bsrc="([^"]+)"', html)
    assert len(imgs) >= 3 and all(s.startswith("data:image/png;base64,") for s in imgs)  # heatmap, bars, probe


def test_model_output_is_escaped(html):
    assert XSS not in html
    assert "<b>boom</b>" not in html and "<b>markup</b>" not in html
    assert "a note with &lt;b&gt;markup&lt;/b&gt; &amp; an ampersand" in html
    assert html.count("</script>") == 2  # the JSON block and the browser script, nothing from the data
    data = sample_json(html)
    assert data["samples"][0]["r"] == XSS  # intact once parsed, shown with textContent
    assert data["samples"][2]["err"] == "backend failed: </script><b>boom</b>"


def test_sample_json_has_every_sample(run_dir, html):
    data = sample_json(html)
    lines = [json.loads(l) for l in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(data["samples"]) == len(lines)
    for s, d in zip(data["samples"], lines):
        assert (s["m"], s["t"], s["x"], s["e"], s["g"], s["o"]) == (d["model"], d["task"], d["transform"],
                                                                     d["example_id"], d["group"], d["outcome"])
        assert data["texts"][s["p"]] == d["prompt"]
        assert data["texts"][s["q"]] == d["transformed_prompt"]
        if d.get("probe"):
            assert s["pr"] == d["probe"]
    long = data["samples"][1]["r"]
    assert len(long) < MAX_TEXT + 200 and "samples.jsonl has the full text" in long
    assert data["truncated"] == 1
    assert data["has_probe"] and 'id="f-outcome"' in html and 'id="f-q"' in html and 'id="f-error"' in html


def test_every_table_number_links_to_its_samples(html):
    data = sample_json(html)
    samples = data["samples"]
    p = parse_links(html)
    numeric = [c for c in p.cells if "num" in c["cls"] and c["table"] != "samples" and re.search(r"\d", c["text"])]
    assert numeric
    unlinked = [c["text"] for c in numeric if not c["linked"].strip() and c["text"].strip() not in ("—",)]
    assert not unlinked, unlinked
    checked = 0
    for a in p.links:
        if a["table"] != "paper" or not a["href"].startswith("#samples"):
            continue
        q = parse_qs(urlsplit(a["href"][1:]).query)
        chosen = select(samples, a["href"])  # may be empty: a 0.0 rate links to no sample
        if "model" in q and "outcome" in q and re.match(r"\d+\.\d \[", a["text"]):  # a rate: k of the scored samples
            cell = select(samples, re.sub(r"&outcome=[^&]*", "", a["href"]))
            scored = [s for s in cell if s["o"] != "error"]
            rate = float(a["text"].split()[0])
            assert rate == pytest.approx(100 * len(chosen) / len(scored), abs=0.051), a
            checked += 1
        elif "model" in q and "outcome" not in q:  # n
            assert int(a["text"]) == sum(1 for s in chosen if s["o"] != "error"), a
            checked += 1
    assert checked >= 2 * len(TRANSFORMS) * 2


def test_sections(html):
    for section in ("Recovery overview", "Probe: P(ICL)", "Agreement", "Paired tests", "Probe vs greedy rates",
                    "By config", "All outcomes", 'id="samples"'):
        assert section in html, section
    assert "Leetspeak" in html and "French" in html  # display names


def test_sections_render_only_when_present(tmp_path):
    samples = make_samples()
    summary = make_summary(samples, extended=False)
    folder = write_run(tmp_path / "old", samples, summary)
    text = write_views(folder).read_text(encoding="utf-8")
    assert "Recovery overview" in text and "Paired tests" not in text and "Agreement" not in text
    assert "Probe: P(ICL)" not in text and "Probe vs greedy" not in text
    assert not (folder / "icl_vs_if-probe.png").exists() and (folder / "recovery-heatmap.png").exists()
    bare = write_run(tmp_path / "bare", samples, {"rows": summary["rows"]})
    text = write_views(bare).read_text(encoding="utf-8")
    assert "Recovery overview" not in text and "All outcomes" in text
    assert len(sample_json(text)["samples"]) == len(samples)


def test_report_files_take_sample_objects_or_dicts(tmp_path):
    samples = make_samples()
    manifest, summary = make_manifest(), make_summary(samples)
    files, plots = report_files(manifest, summary, samples)
    assert len(sample_json(files["report.html"])["samples"]) == len(samples)
    dicts = [json.loads(s.to_json()) for s in samples]
    assert report_files(manifest, summary, dicts)[0]["report.html"] == files["report.html"]
    assert set(files) == {"report.html", "report.md", *plots.values()}
    assert plots == {"icl_vs_if": "icl_vs_if.png", "refusal": "refusal.png", "recovery-heatmap": "recovery-heatmap.png",
                     "icl_vs_if-probe": "icl_vs_if-probe.png"}
    assert all(files[name][:8] == b"\x89PNG\r\n\x1a\n" for name in plots.values())


def test_write_views_is_atomic_and_updates_the_plot_list(tmp_path):
    samples = make_samples()
    folder = write_run(tmp_path / "run", samples, make_summary(samples))
    write_views(folder)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["plots"]["icl_vs_if-probe"] == "icl_vs_if-probe.png" and (folder / "icl_vs_if-probe.png").exists()
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary["probe"] = []  # e.g. re-scored without the probe: its plot goes, from the folder and the manifest
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    write_views(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert "icl_vs_if-probe" not in manifest["plots"] and not (folder / "icl_vs_if-probe.png").exists()
    assert (folder / "icl_vs_if.png").exists()


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ConjugateError, match="not a finished run folder"):
        write_views(tmp_path)
    with pytest.raises(ConjugateError, match="missing: no such folder"):
        write_views(tmp_path / "missing")


def test_plots_are_bytes_and_none_without_data():
    from harness.outputs.plots import draw_plots, heatmap_png, probe_png, rates_png

    assert heatmap_png({"rows": []}, ["icl_vs_if"], TRANSFORMS) is None
    assert probe_png({"rows": []}, "icl_vs_if", TRANSFORMS, "icl", "ICL") is None
    assert rates_png({"rows": []}, TRANSFORMS, "icl_vs_if", "icl") is None
    summary = make_summary(make_samples())
    summary["recovery"][1]["recovery"] = float("nan")
    for png in (heatmap_png(summary, ["icl_vs_if", "refusal"], TRANSFORMS), probe_png(summary, "icl_vs_if", TRANSFORMS, "icl", "ICL"),
                rates_png(summary, TRANSFORMS, "icl_vs_if", "icl")):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    refusal = {"rows": [r for r in summary["rows"] if r["task"] == "refusal"]}  # no recovery, no probe: bars only
    assert list(draw_plots({"spec": {"tasks": ["refusal"], "transforms": TRANSFORMS}}, refusal)) == ["refusal.png"]


# -- in a browser ---------------------------------------------------------------------------

def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.skip("no headless Chromium installed (Debian: apt-get install chromium); the HTML checks above still ran")
    return exe


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_screenshot_is_not_blank(run_dir, tmp_path):
    png = tmp_path / "report.png"
    proc = run_chromium(tmp_path, f"--screenshot={png}", "--window-size=1400,2000", (run_dir / "report.html").as_uri())
    assert png.exists(), proc.stderr[-2000:]
    assert png.stat().st_size > 20_000
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.shape[0] == 2000 and img.shape[1] == 1400
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05, "the screenshot is a single colour"
    colours = Counter(map(tuple, (rgb[::97] * 255).astype(int).tolist()))
    assert len(colours) > 20 and colours.most_common(1)[0][1] < 0.95 * sum(colours.values())


def test_links_filter_the_sample_browser(run_dir, tmp_path, html):
    """The JavaScript runs: a table link's filters give the same count in the browser as in Python."""
    samples = sample_json(html)["samples"]
    link = next(a["href"] for a in parse_links(html).links
                if a["table"] == "paper" and "model=finetuned" in a["href"] and "outcome=" in a["href"]
                and "transform=leetspeak" in a["href"])
    expected = len(select(samples, link))
    proc = run_chromium(tmp_path, "--dump-dom", (run_dir / "report.html").as_uri() + link)
    m = re.search(r'id="sample-info"[^>]*>(\d+) of (\d+) samples match', proc.stdout)
    assert m, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (expected, len(samples))
    rows = re.search(r'<tbody id="sample-rows">(.*?)</tbody>', proc.stdout, re.S).group(1)
    assert rows.count("<tr>") == min(expected, 25) and "finetuned" in rows
