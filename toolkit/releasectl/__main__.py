from releasectl.cli import main

main()
