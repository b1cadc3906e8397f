"""One module per subcommand: NAME, HELP, add_arguments(parser), run(args) -> exit code.

Modules here must not import a framework at module level (the CLI imports all of them).
"""
