"""``tipstream console``: a web page over the simulation runs in PostgreSQL.

The runs of ``sim_runs`` with their live status and progress, a page per run (the reward
curve and the per-persona and per-action tables with their 95% intervals), the paired
comparison of two runs, and a form that starts a run (it needs the admin token).

- :mod:`streams.console.data`: the reads, summarized by ``streams.analysis``;
- :mod:`streams.console.svg`: the reward curve as inline SVG, drawn on the server;
- :mod:`streams.console.launcher`: the form's run, a ``tipstream simulate`` child process;
- :mod:`streams.console.views` and :mod:`streams.console.app`: the aiohttp routes, the
  jinja2 templates (``templates/``) and the small script that polls (``static/``).

The routes are listed in docs/contracts.md; the page is described in docs/console.md.
"""
