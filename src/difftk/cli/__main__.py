from difftk.cli import main

main()
