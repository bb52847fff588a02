from ui.cli.commands import main

main()
