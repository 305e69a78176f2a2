"""The capacity report: ``capacity.json`` (written by ``stackproof load``)
drawn as an HTML page with plots (inline SVG, no plotting library): for each
signal, throughput against p50/p99 write latency per step with the latency
objective, and offered against achieved rate per step; then the steps'
table with completeness and links to locust's own per-run reports.

    python -m reports.capacity results/capacity.json results/capacity.html
"""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path

W, H, PAD = 760, 300, 60
ITEMS = {"metrics": "samples", "logs": "lines"}
COLOR = {"metrics": "#1f77b4", "logs": "#2ca02c"}
e = html.escape


def _nice(v: float) -> str:
    return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v:,.0f}"


def _frame(title: str, xlabel: str, ylabel: str, xmax: float, ymax: float, xticks: bool = True) -> list[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-size="11" '
             f'font-family="sans-serif"><text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">'
             f'{e(title)}</text>',
             f'<rect x="{PAD}" y="{PAD - 30}" width="{W - 2 * PAD}" height="{H - 2 * PAD + 30}" fill="none" '
             f'stroke="#999"/>']
    for i in range(5):
        fx = i / 4
        x = PAD + fx * (W - 2 * PAD)
        y = H - PAD - fx * (H - 2 * PAD + 30)
        if xticks:
            parts.append(f'<text x="{x:.0f}" y="{H - PAD + 14}" text-anchor="middle">{_nice(xmax * fx)}</text>')
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.0f}" text-anchor="end">{_nice(ymax * fx)}</text>')
        parts.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{y:.0f}" y2="{y:.0f}" stroke="#eee"/>')
    parts.append(f'<text x="{W / 2}" y="{H - 20}" text-anchor="middle">{e(xlabel)}</text>')
    parts.append(f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">{e(ylabel)}</text>')
    return parts


def _xy(xmax: float, ymax: float):
    def f(x: float, y: float) -> tuple[float, float]:
        return (PAD + min(x / xmax, 1.05) * (W - 2 * PAD),
                H - PAD - min(y / ymax, 1.05) * (H - 2 * PAD + 30))
    return f


def latency_plot(record: dict, sig: str) -> str:
    """Achieved throughput (x) against p50 and p99 latency (y), one point per step."""
    steps = [s for s in record["steps"] if sig in s["signals"]]
    pts = [(s["signals"][sig], s) for s in steps]
    objective = record["objectives"]["p99_ms"]
    xmax = max([p["achieved_per_s"] for p, _ in pts] + [1]) * 1.1
    ymax = max([p["p99_ms"] for p, _ in pts] + [objective]) * 1.15
    at = _xy(xmax, ymax)
    parts = _frame(f"{sig}: throughput against write latency per step", f"{ITEMS[sig]}/s taken",
                   "latency (ms)", xmax, ymax)
    _, oy = at(0, objective)
    parts.append(f'<line x1="{PAD}" x2="{W - PAD}" y1="{oy:.1f}" y2="{oy:.1f}" stroke="#d62728" '
                 f'stroke-dasharray="6,4"/><text x="{W - PAD - 4}" y="{oy - 4:.1f}" text-anchor="end" '
                 f'fill="#d62728">p99 objective {objective:g} ms</text>')
    for key, dash, r in (("p50_ms", "3,3", 3), ("p99_ms", "", 4.5)):
        line = " ".join("{:.1f},{:.1f}".format(*at(p["achieved_per_s"], p[key])) for p, _ in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{COLOR[sig]}" stroke-dasharray="{dash}"/>')
        for p, s in pts:
            x, y = at(p["achieved_per_s"], p[key])
            fill = COLOR[sig] if s.get("held") else "#d62728"
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}"><title>step {s.get("step", 1)}: '
                         f'{s["users"]} users, {p["achieved_per_s"]:,.0f} {ITEMS[sig]}/s, '
                         f'{key[:3]} {p[key]:g} ms</title></circle>')
            if key == "p99_ms":
                parts.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}">{s["users"]}u</text>')
    parts.append(f'<text x="{PAD + 6}" y="{PAD - 14}">solid: p99, dashed: p50; label: users; '
                 f'red point: the step broke an objective</text></svg>')
    return "\n".join(parts)


def rate_plot(record: dict, sig: str) -> str:
    """Offered against achieved rate per step (bars)."""
    steps = [s for s in record["steps"] if sig in s["signals"]]
    n = max(len(steps), 1)
    ymax = max([max(s["signals"][sig]["offered_per_s"], s["signals"][sig]["achieved_per_s"])
                for s in steps] + [1]) * 1.1
    parts = _frame(f"{sig}: offered and taken per step", "step (users)", f"{ITEMS[sig]}/s", n, ymax, xticks=False)
    slot = (W - 2 * PAD) / n
    for i, s in enumerate(steps):
        p = s["signals"][sig]
        x0 = PAD + i * slot + slot * 0.15
        bw = slot * 0.33
        for j, (v, color) in enumerate(((p["offered_per_s"], "#bbb"), (p["achieved_per_s"], COLOR[sig]))):
            h = v / ymax * (H - 2 * PAD + 30)
            parts.append(f'<rect x="{x0 + j * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                         f'fill="{color if s.get("held") or j == 0 else "#d62728"}"><title>{_nice(v)}</title></rect>')
        parts.append(f'<text x="{x0 + bw:.1f}" y="{H - PAD + 26}" text-anchor="middle">{s.get("step", 1)} '
                     f'({s["users"]})</text>')
    parts.append(f'<text x="{PAD + 6}" y="{PAD - 14}">grey: offered; colour: taken (red: the step broke)</text></svg>')
    return "\n".join(parts)


def _link(path: str | None, base: Path) -> str:
    if not path:
        return ""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        rel = path
    return f'<a href="{e(rel)}">locust report</a>'


def render(record: dict, base: Path = Path(".")) -> str:
    cap = record.get("capacity")
    sigs = [s for s in ("metrics", "logs") if any(s in st["signals"] for st in record["steps"])]
    if record["mode"] == "search":
        headline = ("Capacity: " + ", ".join(f"<b>{v:,.0f} {k.replace('_per_s', '/s')}</b>"
                                             for k, v in cap.items() if k.endswith("_per_s"))
                    + f" at {cap['users']} users (step {cap['step']})") if cap else "No step held the objectives."
    else:
        headline = "Single run: " + ("held the objectives" if cap else "broke an objective")
    ob = record["objectives"]
    w = record["workload"]
    rows = []
    for s in record["steps"]:
        for sig, p in s["signals"].items():
            ok = "yes" if p.get("complete") else "<b style='color:#d62728'>NO</b>"
            rows.append(
                f"<tr><td>{s.get('step', 1)}</td><td>{sig}</td><td>{s['users']}</td>"
                f"<td>{p['offered_per_s']:,.0f}</td><td>{p['achieved_per_s']:,.0f}</td><td>{p['requests']:,}</td>"
                f"<td>{p['failures']:,}</td><td>{p['p50_ms']:g}</td><td>{p['p95_ms']:g}</td><td>{p['p99_ms']:g}</td>"
                f"<td>{p['max_ms']:.0f}</td><td>{p['accepted']:,}</td><td>{p.get('stored', '?'):,}</td>"
                f"<td>{p['unsure']:,}</td><td>{ok}</td>"
                f"<td>{'held' if s.get('held') else e('; '.join(s.get('broke', [])) or 'completeness')}</td>"
                f"<td>{_link(s['files'].get('html'), base)}</td></tr>")
    plots = "".join(f"<div>{latency_plot(record, sig)}</div><div>{rate_plot(record, sig)}</div>" for sig in sigs)
    verdict = record["verdict"]
    color = "#2ca02c" if verdict == "pass" else "#d62728"
    why = "".join(f"<li>{e(x)}</li>" for x in record.get("why", []))
    knobs = ", ".join(f"{k}={v}" for k, v in w.items() if k != "tenants") + \
        (f", tenants={','.join(w['tenants'])}" if w.get("tenants") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>stackproof capacity report</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}} .plots{{display:flex;flex-wrap:wrap;gap:12px}}</style>
</head><body>
<h1>Write-path capacity: {e(record['target'])} <span style="color:{color}">{verdict.upper()}</span></h1>
<p>{headline}<br>Provider {e(str(record.get('provider')))}, release {e(str(record.get('release')))};
machine: {record['machine']['cpus']} CPUs, load average at the end {record['machine']['loadavg'][0]:.2f}.</p>
{f'<ul>{why}</ul>' if why else ''}
<p>Objectives: p99 write latency ≤ {ob['p99_ms']:g} ms, error rate ≤ {ob['max_error_rate']:g}, the platform takes
≥ {ob['min_throughput_ratio']:.0%} of the offered rate; and after every step, what the target returns equals
what it accepted (accepted ≤ stored ≤ accepted + unsure).<br>Workload: {e(knobs)}.</p>
<div class="plots">{plots}</div>
<h2>Steps</h2>
<table><tr><th>step</th><th>signal</th><th>users</th><th>offered/s</th><th>taken/s</th><th>requests</th>
<th>failures</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>accepted</th><th>stored</th>
<th>unsure</th><th>complete</th><th>verdict</th><th></th></tr>
{''.join(rows)}</table>
</body></html>
"""


def write(json_path: Path, html_path: Path) -> Path:
    record = json.loads(Path(json_path).read_text())
    html_path.write_text(render(record, html_path.parent))
    return html_path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    print(write(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
