"""The simulator: synthetic personas played onto the production topics (docs/simulation.md).

Three ways to run: the closed loop (``closed_loop``), the external judge's two phases
(``external``) and open-loop load at a rate (``load``). They share a run's configuration
and users (``config``), who chooses (``choosers``), the events a judgment makes
(``events``), the way onto Kafka (``publisher``), a run's lifecycle and records (``run``,
``store``) and its progress line (``progress``); ``reports`` prints and renders runs.
"""
