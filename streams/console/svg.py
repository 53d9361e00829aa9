"""The reward curve as inline SVG, drawn on the server (no chart library in the browser).

The same lines as the report's PNG (``streams.analysis.render.write_curve_png``): per run,
the mean reward per round (faint), its moving mean, and the expected reward of the chosen
tip when the judge knows it; the random and oracle expectations of the first run dotted.
The window of the moving mean is ``rounds // 20`` (at least 1), as in the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from streams.analysis.render import smooth

__all__ = ["COLOURS", "Scale", "polyline_points", "reward_curve_svg"]

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 52, 16, 14, 40
_LEGEND_LINE = 15


@dataclass(frozen=True, slots=True)
class Scale:
    """Data coordinates to SVG pixels: x over [x0, x1], y over [y0, y1] (y up)."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: float
    height: float

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        inner = self.width - _MARGIN_LEFT - _MARGIN_RIGHT
        return _MARGIN_LEFT + (value - self.x0) / span * inner

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        inner = self.height - _MARGIN_TOP - _MARGIN_BOTTOM
        return _MARGIN_TOP + (self.y1 - value) / span * inner


def polyline_points(xs: Sequence[float], ys: Sequence[float | None], scale: Scale) -> list[str]:
    """``points`` attributes, one per unbroken stretch: a missing or NaN value breaks the line.

    >>> s = Scale(0, 2, 0, 1, 52 + 16 + 100, 14 + 40 + 100)
    >>> polyline_points([0, 1, 2], [0.0, None, 1.0], s)
    ['52.0,114.0', '152.0,14.0']
    """
    stretches: list[list[str]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if y is None or not math.isfinite(y):
            if stretches[-1]:
                stretches.append([])
            continue
        stretches[-1].append(f"{scale.x(x):.1f},{scale.y(y):.1f}")
    return [" ".join(points) for points in stretches if points]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-9 else "0"


def reward_curve_svg(
    curves: Mapping[str, Mapping[str, list[Any]]],
    *,
    width: int = 760,
    height: int = 320,
    title: str = "reward per round",
) -> str:
    """An ``<svg>`` element of the curves (``streams.analysis.summary.reward_curve`` each),
    keyed by their legend label; labels are escaped. No rounds: an empty chart that says so."""
    lines: list[tuple[str, list[float], Sequence[float | None], str, str]] = []
    baselines_drawn = False
    for (label, curve), colour in zip(curves.items(), COLOURS, strict=False):
        rounds = [float(r) for r in curve["round"]]
        window = max(1, len(rounds) // 20)
        lines.append((f"{label}: reward", rounds, list(curve["reward"]), colour, "faint"))
        lines.append(
            (
                f"{label}: reward (moving mean of {window})",
                rounds,
                smooth(curve["reward"], window),
                colour,
                "solid",
            )
        )
        if any(v is not None for v in curve["expected"]):
            lines.append(
                (
                    f"{label}: expected reward of chosen tip",
                    rounds,
                    smooth(curve["expected"], window),
                    colour,
                    "dashed",
                )
            )
            if not baselines_drawn and any(v is not None for v in curve["random"]):
                lines.append(
                    ("oracle (expected)", rounds, smooth(curve["oracle"], window), "#000", "dotted")
                )
                lines.append(
                    ("random (expected)", rounds, smooth(curve["random"], window), "#888", "dotted")
                )
                baselines_drawn = True
    legend = [line for line in lines if line[4] != "faint"]
    height += _LEGEND_LINE * len(legend)
    xs = [x for line in lines for x in line[1]]
    ys = [y for line in lines for y in line[2] if y is not None and math.isfinite(y)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    if not xs or not ys:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            'class="empty">no judgments yet</text></svg>'
        )
        return "".join(parts)
    low, high = min(ys), max(ys)
    pad = (high - low) * 0.05 or 0.1
    plot_height = height - _LEGEND_LINE * len(legend)
    scale = Scale(min(xs), max(xs), low - pad, high + pad, width, plot_height)
    parts.append(_axes(scale))
    dashes = {"solid": "", "faint": "", "dashed": "6 4", "dotted": "2 3"}
    for label, line_xs, line_ys, colour, style in lines:
        opacity = "0.25" if style == "faint" else "1"
        stroke = "1" if style == "faint" else "1.8"
        dash = f' stroke-dasharray="{dashes[style]}"' if dashes[style] else ""
        for points in polyline_points(line_xs, line_ys, scale):
            parts.append(
                f'<polyline class="line {style}" fill="none" stroke="{colour}" '
                f'stroke-width="{stroke}" stroke-opacity="{opacity}"{dash} points="{points}">'
                f"<title>{escape(label)}</title></polyline>"
            )
    parts.append(_legend(legend, plot_height))
    parts.append("</svg>")
    return "".join(parts)


def _axes(scale: Scale) -> str:
    left, right = _MARGIN_LEFT, scale.width - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, scale.height - _MARGIN_BOTTOM
    parts = [
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="none" stroke="#ccc"/>'
    ]
    for value in _ticks(scale.y0, scale.y1):
        y = scale.y(value)
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_label(value)}</text>"
        )
    for value in _ticks(scale.x0, scale.x1):
        x = scale.x(value)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">'
            f"{_label(value)}</text>"
        )
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{scale.height - 6}" text-anchor="middle" '
        'class="axis">round</text>'
        f'<text transform="translate(14 {(top + bottom) / 2:.0f}) rotate(-90)" '
        'text-anchor="middle" class="axis">reward per judgment</text>'
    )
    return "".join(parts)


def _legend(lines: Sequence[tuple[str, Any, Any, str, str]], top: float) -> str:
    """One line per entry under the plot (never over the curves)."""
    parts = ['<g class="legend">']
    x, y = _MARGIN_LEFT, top + 4
    for i, (label, _, _, colour, style) in enumerate(lines):
        dash = {"dashed": ' stroke-dasharray="6 4"', "dotted": ' stroke-dasharray="2 3"'}
        parts.append(
            f'<line x1="{x}" x2="{x + 22}" y1="{y + i * _LEGEND_LINE - 4}" '
            f'y2="{y + i * _LEGEND_LINE - 4}" stroke="{colour}" stroke-width="1.8"'
            f'{dash.get(style, "")}/><text x="{x + 28}" y="{y + i * _LEGEND_LINE}" '
            f'class="legend-label">{escape(label)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)
