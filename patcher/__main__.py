from patcher.cli import main

main(prog_name="convlstm-patch")
