"""The report of a run: ``report.md``, ``report.html`` and ``results.json``, rendered from its :class:`Results`.

The Markdown and the HTML hold the same tables (:func:`report_tables`):
parameters, numbers per element, the FSC, particles, shell coverage,
timings and the run's record; the figures are linked beside them.
"""

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hyperspy_edxtomo.base.provenance import jsonable

if TYPE_CHECKING:
    from hyperspy_edxtomo.workflow.results import Results

__all__ = ["write_report", "report_tables", "write_results_json"]


def _fmt(value, digits=3):
    if isinstance(value, float):
        return f"{value:.{digits}g}" if np.isfinite(value) else "n/a"
    return str(value)


def _fmt_counts(value):
    return f"{value:.0f}" if np.isfinite(value) else "n/a"


def report_tables(results: "Results | Mapping[str, Any]") -> list[tuple[str, list[str], list[Sequence[Any]]]]:
    """The report as a list of (heading, header row, rows).

    Parameters
    ----------
    results : Results or dict
        ``"numbers"`` and ``"timings"`` (and ``"record"``, when there is one).

    Returns
    -------
    list of (str, list of str, list of rows)
        What :func:`write_report` writes, table by table.

    Examples
    --------
    >>> from hyperspy_edxtomo.workflow.report import report_tables
    >>> res = {"numbers": {"elements": ["Zn"], "counts_per_tilt": {"Zn": 1e3}, "counts_total": {"Zn": 1.3e4}},
    ...        "timings": {"total": 1.0}}
    >>> [heading for heading, _, _ in report_tables(res)]
    ['Parameters', 'Per element', 'Timings']
    """
    n = results["numbers"]
    t = results["timings"]
    units = n.get("pixel_size", [1, "px"])[1]
    out = []
    rows = [("input", n.get("input", "")), ("elements", ", ".join(n.get("elements", []))),
            ("X-ray lines", ", ".join(n.get("xray_lines", [])) or "n/a"),
            ("tilts (deg)", f"{len(n.get('tilts_deg', []))} views: " + ", ".join(_fmt(x, 4) for x in n.get("tilts_deg", []))),
            ("pixel size", f"{_fmt(n['pixel_size'][0], 4)} {units}" if "pixel_size" in n else "n/a"),
            ("image size (y, x)", " x ".join(map(str, n.get("image_shape", [])))),
            ("integer counts", str(n.get("integer_counts", "")))]
    a = n.get("alignment")
    if isinstance(a, dict):
        rows.append(("alignment", f"{a['method']}: shifts up to {a['max_shift_px']:.2f} px (rms {a['rms_shift_px']:.2f}), "
                                  f"tilt-axis offset {a['axis_offset_px']:.2f} px, rotation {a['rotation_deg']:.2f} deg"))
    else:
        rows.append(("alignment", str(a)))
    rows += _flat_rows("denoising", n.get("denoiser", "none"))
    rows.append(("method", n.get("method", "")))
    params = n.get("parameters", {})
    if params and all(isinstance(v, dict) for v in params.values()):
        for el, p in params.items():
            rows += _flat_rows(f"parameters ({el})", p)
    else:
        rows += _flat_rows("parameters", params)
    rows.append(("volume (z, y, x)", " x ".join(map(str, n.get("volume_shape", [])))))
    out.append(("Parameters", ["", "value"], rows))

    els = n.get("elements", [])
    header = ["element", "counts per tilt", "counts in all"]
    f = n.get("fsc")
    if isinstance(f, dict):
        header += [f"FSC 0.143 ({f['units']})", f"FSC 1/2-bit ({f['units']})"]
    if "pearson_with_truth" in n:
        header.append("correlation with truth")
    rows = []
    for el in els:
        row = [el, _fmt_counts(n["counts_per_tilt"][el]), _fmt_counts(n["counts_total"][el])]
        if isinstance(f, dict):
            lim = "<= " if f["nyquist_limited_0143"][el] else ""
            row += [lim + _fmt(f["resolution_0143"][el]), _fmt(f["resolution_half_bit"][el])]
        if "pearson_with_truth" in n:
            row.append(_fmt(n["pearson_with_truth"].get(el, float("nan"))))
        rows.append(row)
    out.append(("Per element", header, rows))
    if isinstance(f, dict):
        hp = f.get("parameters") or {}
        hp = {el: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()} for el, p in hp.items()}
        out.append(("FSC", ["", ""], [("halves", f"{f['split']} split (seed {f['seed']}), each reconstructed with "
                                                  f"{f['method']}"),
                                      *_flat_rows("parameters of the halves", hp),
                                      ("note", "resolution of half the data; the full reconstruction resolves "
                                               "somewhat finer")]
                    + ([("warning", f["warning"])] if f.get("warning") else [])))
    elif f is not None:
        out.append(("FSC", ["", ""], [("FSC", str(f))]))

    lu = n.get("length_units", units)
    parts = n.get("particles", [])
    if parts:
        rows = [[p["label"], _fmt(p["x"]), _fmt(p["y"]), _fmt(p["z"]), _fmt(p["equivalent_diameter"]), p["n_voxels"],
                 "; ".join(p.get("flags", [])) or "no flag"] for p in parts]
        flagged = [p["label"] for p in parts if p.get("flags")]
        if flagged:
            rows.append(["note", f"do not trust the numbers of particle(s) {', '.join(map(str, flagged))} "
                                  "(size, shells) without a look at the volume cuts: see their flags", "", "", "", "",
                         ""])
        out.append(("Particles", ["#", f"x ({lu})", f"y ({lu})", f"z ({lu})", f"equivalent diameter ({lu})", "voxels",
                                  "quality"], rows))
    elif n.get("particles_note"):
        out.append(("Particles", ["", ""], [("particles", n["particles_note"])]))
    shells = n.get("shells")
    if isinstance(shells, list) and shells:
        truth = {(r["element"]): r for r in n.get("shells_truth", [])}
        header = ["particle", "element", "coverage", "absent", f"mean thickness ({lu})"]
        if truth:
            header.append("absent in the truth")
        rows = []
        flagged = {p["label"] for p in parts if p.get("flags")}
        for r in shells:
            row = [f"{r['particle']} (flagged)" if r["particle"] in flagged else r["particle"], r["element"], f"{100 * r['coverage']:.1f} %", f"{100 * r['absent_fraction']:.1f} %",
                   _fmt(r["mean_thickness_where_present"])]
            if truth:
                tr = truth.get(r["element"])
                row.append(f"{100 * tr['absent_fraction']:.1f} %" if tr and r["particle"] == parts[0]["label"] else "")
            rows.append(row)
        out.append(("Shell coverage", header, rows))
        if n.get("shells_note"):
            rows.append(["note", n["shells_note"]] + [""] * (len(header) - 2))
    elif shells:
        out.append(("Shell coverage", ["", ""], [("shells", str(shells))]))
    out.append(("Timings", ["step", "seconds"], [(k, f"{v:.1f}") for k, v in t.items()]))
    rec = results.get("record")
    if rec:
        rows = [("date", rec["date"]), ("command line", rec.get("command_line") or "none (called from Python)"),
                ("call", rec["call"])]
        rows += _flat_rows("argument", rec.get("arguments", {}))
        for i, f in enumerate(rec.get("inputs", [])):
            rows.append((f"input file {i + 1}", f"{f['path']} ({f['bytes']} bytes), SHA-256 {f['sha256']}"))
        if not rec.get("inputs"):
            rows.append(("input files", "none (a signal in memory)"))
        rows += [(f"version of {k}", v) for k, v in rec.get("versions", {}).items()]
        out.append(("Record", ["", ""], rows))
    return out


def _flat_rows(name, value):
    """Rows ``(name.key..., value)`` of a nested parameter record, in full (never cut)."""
    if isinstance(value, dict):
        if not value:
            return [(name, "(none)")]
        return [row for k, v in value.items() for row in _flat_rows(f"{name}: {k}" if ":" not in name
                                                                    else f"{name}.{k}", v)]
    if isinstance(value, (list, tuple, np.ndarray)) and any(isinstance(v, (dict, list, tuple, np.ndarray))
                                                            for v in value):
        return [row for i, v in enumerate(value) for row in _flat_rows(f"{name}[{i}]", v)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [(name, "[" + ", ".join(_fmt(float(v), 6) if isinstance(v, (float, np.floating)) else str(v)
                                        for v in value) + "]")]
    return [(name, _fmt(float(value), 6) if isinstance(value, (float, np.floating)) else str(value))]


def write_report(results: "Results | Mapping[str, Any]", out: str | Path | None = None,
                 title: str = "hyperspy_edxtomo report") -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html``: tables of parameters and numbers, and the figures.

    Parameters
    ----------
    results : Results or dict
        As returned by :func:`~hyperspy_edxtomo.workflow.pipeline.run_pipeline`
        (``"numbers"``, ``"timings"``, ``"files"``).
    out : None, str or Path
        Folder; None: ``results["out"]``.
    title : str

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The Markdown and the HTML report. Figures are linked by relative path
        (they sit beside the reports).

    Examples
    --------
    >>> import tempfile
    >>> from hyperspy_edxtomo.workflow.report import write_report
    >>> res = {"numbers": {"elements": ["Zn"], "counts_per_tilt": {"Zn": 1e3}, "counts_total": {"Zn": 1.3e4}},
    ...        "timings": {"total": 1.0}, "files": {}}
    >>> md, page = write_report(res, tempfile.mkdtemp())
    >>> "| Zn | 1000 | 13000 |" in md.read_text()
    True
    """
    out = Path(out if out is not None else results["out"])
    out.mkdir(parents=True, exist_ok=True)
    tables = report_tables(results)
    order = ("volume cuts", "RGB overlay", "maximum projections", "FSC curves", "shell thickness maps")
    pictures = [(name, Path(p)) for name, p in results.get("files", {}).items() if str(p).endswith(".png")]
    pictures.sort(key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    others = [(name, Path(p)) for name, p in results.get("files", {}).items() if not str(p).endswith(".png")]

    md = [f"# {title}", ""]
    for heading, header, rows in tables:
        md += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        md.append("")
    if pictures:
        md += ["## Figures", ""]
        md += [f"![{name}]({p.name})" for name, p in pictures]
        md.append("")
    if others:
        md += ["## Files", ""] + [f"- {name}: `{p.name}`" for name, p in others] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    e = html.escape
    page = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
            "table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
            "text-align:left;font-size:90%}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}</style>",
            "</head><body>", f"<h1>{e(title)}</h1>"]
    for heading, header, rows in tables:
        page.append(f"<h2>{e(heading)}</h2><table>")
        page.append("<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>")
        for row in rows:
            page.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
        page.append("</table>")
    if pictures:
        page.append("<h2>Figures</h2>")
        for name, p in pictures:
            page.append(f"<figure><img src='{e(p.name)}' alt='{e(name)}'><figcaption>{e(name)}</figcaption></figure>")
    if others:
        page.append("<h2>Files</h2><ul>" + "".join(f"<li>{e(name)}: <a href='{e(p.name)}'>{e(p.name)}</a></li>"
                                                   for name, p in others) + "</ul>")
    page.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(page), encoding="utf-8")
    return md_path, html_path


def write_results_json(results: "Results | Mapping[str, Any]", out: str | Path,
                       keys: Sequence[str] = ("record", "numbers", "timings", "files")) -> Path:
    """Write ``results.json``: ``keys`` of the results, as plain JSON types.

    Parameters
    ----------
    results : Results or dict
    out : str or Path
        Folder.
    keys : sequence of str
        What the file holds, in this order; ``"files"`` as name -> path text.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import json, tempfile
    >>> from hyperspy_edxtomo.workflow.report import write_results_json
    >>> path = write_results_json({"numbers": {"fsc": float("nan")}, "timings": {}}, tempfile.mkdtemp(),
    ...                           keys=("numbers", "timings"))
    >>> json.loads(path.read_text())
    {'numbers': {'fsc': None}, 'timings': {}}
    """
    document = {key: results[key] for key in keys}
    if "files" in document:
        document["files"] = {k: str(v) for k, v in document["files"].items()}
    path = Path(out) / "results.json"
    path.write_text(json.dumps(jsonable(document), indent=1))
    return path
