"""The overview's chart: repaired vs in-sync findings per run, as inline SVG (no script, no asset).

Pure: numbers in, markup out. Every text it writes is a number or a fixed label, so there is
nothing to escape; the template marks it safe.
"""

from __future__ import annotations

from collections.abc import Sequence

WIDTH, HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 16, 34
SERIES = (("repaired", "#d97706"), ("in_sync", "#2563eb"))


def runs_chart(points: Sequence[tuple[int, int, int]]) -> str:
    """`points` is (run id, repaired, in sync) oldest first; an SVG of grouped bars per run."""
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    top = max([max(r, s) for _, r, s in points] + [1])
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        'aria-label="repaired and in-sync findings per run" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + inner_h}" x2="{WIDTH - PAD_RIGHT}" y2="{PAD_TOP + inner_h}" '
        'stroke="#9ca3af"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if not points:
        parts.append(f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle">no finished runs yet</text>')
    slot = inner_w / max(len(points), 1)
    bar = max(min(slot / 2 - 2, 18), 1)
    for i, (run_id, *values) in enumerate(points):
        x0 = PAD_LEFT + i * slot + (slot - 2 * bar) / 2
        for j, ((name, colour), value) in enumerate(zip(SERIES, values, strict=True)):
            h = inner_h * value / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{PAD_TOP + inner_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>run {run_id}: {value} {name}</title></rect>'
            )
        if len(points) <= 15 or i % max(len(points) // 10, 1) == 0:
            parts.append(
                f'<text x="{x0 + bar:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="middle" font-size="10">'
                f"{run_id}</text>"
            )
    for k, (name, colour) in enumerate(SERIES):
        x = PAD_LEFT + k * 110
        parts.append(f'<rect x="{x}" y="{HEIGHT - 12}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 3}" font-size="11">{name.replace("_", "-")}</text>')
    parts.append("</svg>")
    return "".join(parts)
