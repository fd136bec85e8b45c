from highmark.cli import main

main()
