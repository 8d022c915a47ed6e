"""reports: the main job. Privacy-utility sweeps, Pareto frontiers, figures, PDF reports and the CLI.

May import every other package of the project; nothing imports it.
"""
