from mlverify._internal.cli import main

main()
