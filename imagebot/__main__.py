from imagebot.cli import main

main()
