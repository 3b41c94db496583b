from furrytag_cli.cli.app import main

main()
