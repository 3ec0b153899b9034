from piccolo.columns import Varchar
from piccolo.table import Table


class ExampleNote(Table, tablename="example_note"):
    text = Varchar(length=200)
