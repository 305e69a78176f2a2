"""The upgrade report: JSON, and an HTML page with a timeline plot (inline SVG,
no plotting library needed) of write successes, failures and latency across
the upgrade, with the component swaps marked."""

from __future__ import annotations

import html
import json
from pathlib import Path

from harness.providers.base import READY, STOPPING

W, H, PAD = 1000, 260, 50
COLORS = {"metrics": "#1f77b4", "logs": "#2ca02c"}


def write_upgrade_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j = out_dir / "upgrade-report.json"
    j.write_text(json.dumps(report, indent=1) + "\n")
    h = out_dir / "upgrade-report.html"
    h.write_text(render(report))
    return j, h


def _plot(report: dict) -> str:
    points = [(s, p) for s, pts in report["timeline"].items() for p in pts]
    if not points:
        return "<p>no writes recorded</p>"
    t0 = min(p[0] for _, p in points)
    t1 = max(p[0] for _, p in points)
    lat_max = max(max(p[2] for _, p in points), 0.001)
    x = lambda t: PAD + (t - t0) / max(t1 - t0, 1e-9) * (W - 2 * PAD)  # noqa: E731
    y = lambda s: H - PAD - min(s / lat_max, 1) * (H - 2 * PAD)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-size="11" '
             'font-family="sans-serif">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>']
    for sw in report["swaps"]:
        if sw["phase"] in (STOPPING, READY):
            xx = x(sw["t"])
            color = "#d62728" if sw["phase"] == STOPPING else "#9467bd"
            parts.append(f'<line x1="{xx:.1f}" y1="{PAD}" x2="{xx:.1f}" y2="{H - PAD}" stroke="{color}" '
                         f'stroke-dasharray="4,3"/>')
            if sw["phase"] == STOPPING:
                parts.append(f'<text x="{xx + 2:.1f}" y="{PAD - 6}" fill="{color}">'
                             f'{html.escape(sw["component"])}</text>')
    for signal, pts in report["timeline"].items():
        for t, status, secs in pts:
            ok = 200 <= status < 300
            if ok:
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(secs):.1f}" r="1.6" '
                             f'fill="{COLORS.get(signal.split()[0], "#333")}"/>')
            else:
                parts.append(f'<text x="{x(t):.1f}" y="{H - PAD + 14}" fill="#d62728" text-anchor="middle">×</text>')
    parts += [f'<text x="{PAD}" y="{H - 8}">0 s</text>',
              f'<text x="{W - PAD}" y="{H - 8}" text-anchor="end">{t1 - t0:.1f} s</text>',
              f'<text x="8" y="{PAD + 4}">{lat_max * 1000:.0f} ms</text>',
              f'<text x="8" y="{H - PAD}">0 ms</text>',
              f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">write latency (dots: metrics writers blue, '
              f'logs writers green); '
              f'× failed attempt; dashed: component stopped (red) and ready (purple)</text>', "</svg>"]
    return "\n".join(parts)


def render(report: dict) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(c)}</td>" + "".join(f"<td>{v.get(s, 0):.3f} s</td>" for s in ("metrics", "logs"))
                   + "</tr>" for c, v in report["outage_by_component"].items())
    writers = "".join(f"<tr><td>{e(s)}</td><td>{w['attempts']}</td><td>{w['acked']}</td>"
                      f"<td>{w['failed_attempts']}</td><td><b>{w['lost']}</b></td><td>{w['duplicated']}</td></tr>"
                      for s, w in report["writers"].items())
    vers = lambda r: ", ".join(f"{k} {v}" for k, v in r.items() if k != "name")  # noqa: E731
    c = report["corpus"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>stackproof upgrade report</title>
<style>body{{font-family:sans-serif;margin:2em}}
td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}}</style>
</head><body>
<h1>Upgrade {e(report['from']['name'])} → {e(report['to']['name'])}</h1>
<p>From {e(vers(report['from']))}<br>to {e(vers(report['to']))}.<br>
Upgrade wall time {report['upgrade_seconds']:.1f} s.</p>
<p>Corpus: {c['series']} series, {c['samples']} samples over {c['span_hours']:g} h; {c['streams']} streams,
{c['lines']} lines: all read back exactly after the upgrade.</p>
<h2>Timeline</h2>
{_plot(report)}
<h2>Write outage by component swap</h2>
<table><tr><th>component</th><th>metrics</th><th>logs</th></tr>{rows}</table>
<h2>Writers</h2>
<table><tr><th>signal</th><th>attempts</th><th>acknowledged</th><th>failed attempts</th><th>acknowledged but lost</th>
<th>duplicated</th></tr>{writers}</table>
</body></html>
"""
