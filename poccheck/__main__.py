from poccheck.cli import main

main()
