from cdlm.cli import main

main()
