"""How every bench prints its figures: a title, then one aligned name and value per line."""

from __future__ import annotations

__all__ = ["print_figures"]


def print_figures(title: str, figures: dict[str, float]) -> None:
    print(f"\n== {title}")
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value:>14,.2f}")
