from imagebot.main import main

main()
