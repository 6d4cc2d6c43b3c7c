from inner_architect.app import main

main()
