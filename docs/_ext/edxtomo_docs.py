"""Sphinx directives that build tables from the installed package at build time.

``.. edxtomo-algorithms::`` -- every installed reconstruction algorithm
(``hyperspy_edxtomo.list_algorithms()``) with its parameter table; an
optional argument restricts it to the given names.

``.. edxtomo-denoisers::`` -- the same for the denoisers.

``.. edxtomo-benchmarks::`` -- each script in ``benchmarks/`` with its module
docstring (read with :mod:`ast`, nothing is run), as a literal block.

``.. edxtomo-cli::`` -- the ``--help`` of ``edxtomo`` and of every sub-command.
"""

import ast
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = Path(__file__).resolve().parents[2]


def _table(header, rows, widths):
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_row in cells:
            row = nodes.row()
            for cell in cells_row:
                entry = nodes.entry()
                entry += nodes.paragraph(text=str(cell))
                row += entry
            target += row
    return table


def _method_sections(listing, names, prefix):
    out = []
    for name, info in listing.items():
        if names and name not in names:
            continue
        section = nodes.section(ids=[f"{prefix}-{name}".replace("_", "-")])
        section += nodes.title(text=name)
        section += nodes.paragraph(text=f"{info['summary']} (module {info['plugin']})")
        rows = [(p, repr(d["default"]), d["allowed"], d["description"]) for p, d in info["parameters"].items()]
        if rows:
            section += _table(["parameter", "default", "allowed", "meaning"], rows, [16, 12, 22, 50])
        else:
            section += nodes.paragraph(text="No parameters.")
        out.append(section)
    return out


class AlgorithmsDirective(Directive):
    optional_arguments = 20
    has_content = False

    def run(self):
        from hyperspy_edxtomo import list_algorithms

        return _method_sections(list_algorithms(), self.arguments, "algorithm")


class DenoisersDirective(Directive):
    optional_arguments = 20
    has_content = False

    def run(self):
        from hyperspy_edxtomo.denoising.api import get_denoiser, list_denoisers

        listing = {}
        for name, summary in list_denoisers().items():
            cls = get_denoiser(name)
            listing[name] = {"summary": summary, "plugin": cls.__module__, "parameters": cls.describe_parameters()}
        return _method_sections(listing, self.arguments, "denoiser")


class BenchmarksDirective(Directive):
    has_content = False

    def run(self):
        out = []
        for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or "(no description)"
            section = nodes.section(ids=[script.stem.replace("_", "-")])
            section += nodes.title(text=f"benchmarks/{script.name}")
            block = nodes.literal_block(doc, doc)
            block["language"] = "text"
            section += block
            out.append(section)
        return out


class CliDirective(Directive):
    has_content = False

    def run(self):
        from hyperspy_edxtomo.cli import build_parser

        parser = build_parser()
        text = [parser.format_help()]
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, p in sub.choices.items():
            text.append(p.format_help())
        out = []
        for t in text:
            block = nodes.literal_block(t, t)
            block["language"] = "text"
            out.append(block)
        return out


def setup(app):
    app.add_directive("edxtomo-algorithms", AlgorithmsDirective)
    app.add_directive("edxtomo-denoisers", DenoisersDirective)
    app.add_directive("edxtomo-benchmarks", BenchmarksDirective)
    app.add_directive("edxtomo-cli", CliDirective)
    return {"parallel_read_safe": True, "version": "1"}
