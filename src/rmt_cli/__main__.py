from rmt_cli.cli import main

main()
