"""stackproof's library: target model, releases, binaries, clients, providers,
platform components, process supervision and the CLI.

Nothing in here imports from fixtures/, suites/, loadgen/ or reports/.
"""

__version__ = "0.1.0"
