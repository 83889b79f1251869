from manimd_worker.main import main

main()
