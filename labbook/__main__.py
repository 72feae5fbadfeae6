from labbook.cli import main

main(prog_name="labbook")
