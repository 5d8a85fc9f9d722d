"""Per-example comparisons of a task: agreement of the fine-tuned model with the pretrained one, and the
paired tests (each conjugate against English per model, the two models per conjugate)."""
from __future__ import annotations

from harness.outputs.format import agreement_cell, display_name, pvalue
from harness.outputs.views.common import BASELINE, Cell, href, ordered


def agreement_view(summary: dict, task: str, transforms: list[str]) -> list[dict]:
    """Per conjugate (and group, where summary.json has groups): how often ft(T) = pt(T) and ft(T) = pt(en)."""
    entries = [a for a in summary.get("agreement") or [] if a.get("task") == task]
    order = {t: i for i, t in enumerate(ordered({a.get("transform") for a in entries}, transforms))}
    entries.sort(key=lambda a: (a.get("group", "all") != "all", a.get("group", ""), order[a.get("transform")]))
    out = []
    for a in entries:
        tr, group = a.get("transform"), a.get("group", "all")
        g = None if group == "all" else group
        n = str(a.get("n", "—")) if a.get("n_en", a.get("n")) == a.get("n") else f"{a.get('n')} / {a.get('n_en')}"
        out.append({
            "name": display_name(tr), "group": group, "n": Cell(n, href(task=task, transform=tr, group=g)),
            "same_t": Cell(agreement_cell(a.get("ft_T_vs_pt_T"), a.get("ft_T_vs_pt_T_ci")), href(task=task, transform=tr, group=g)),
            "same_en": Cell(agreement_cell(a.get("ft_T_vs_pt_en"), a.get("ft_T_vs_pt_en_ci")),
                            href(task=task, transform=ordered({tr, BASELINE}, [tr]), group=g)),
        })
    return out


def paired_tests_view(summary: dict, task: str, transforms: list[str]) -> dict | None:
    """Conjugate-vs-English tests (pretrained first), then model-vs-model tests, in the spec's order; the
    full test names once, a short name per row."""
    order = {tr: i for i, tr in enumerate(transforms)}
    tests = [e for e in summary.get("tests") or [] if e.get("task") == task]
    if not tests:
        return None
    tests.sort(key=lambda e: (e.get("kind") != "transform", e.get("model") != "pretrained",
                              order.get(e.get("b") if e.get("kind") == "transform" else e.get("transform"), 99)))
    rows, names = [], []
    for e in tests:
        a, b = e.get("a") or "", e.get("b") or ""
        if e.get("kind") == "transform":
            comparison, where = f"{display_name(a)} vs {display_name(b)}", e.get("model") or "—"
            link = href(task=task, model=e.get("model"), transform=[a, b])
        else:
            comparison, where = f"{a} vs {b}", display_name(e.get("transform") or "")
            link = href(task=task, transform=e.get("transform"), model=[a, b])
        test = e.get("test") or "—"
        if test not in names:
            names.append(test)
        rows.append({"comparison": comparison, "where": where, "test": test.split(" (")[0],
                     "n": Cell(str(e.get("n", "—")), link),
                     "a_only": Cell(str(e.get("a_only", "—")), link, f"{a}: yes, {b}: no"),
                     "b_only": Cell(str(e.get("b_only", "—")), link, f"{b}: yes, {a}: no"),
                     "p": Cell(pvalue(e.get("p")), link), "p_holm": Cell(pvalue(e.get("p_holm")), link)})
    return {"rows": rows, "test_names": names}
