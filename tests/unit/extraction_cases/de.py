"""German: "5 Stück Produkt A", units without "of" ("3 Kisten Äpfel"), changes ("lieber 3",
"ändere es auf 4") and removals ("entferne")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="Äpfel", quantity=2, unit="Kisten"),
        OrderItem(name="Produkt A", quantity=5, unit="Stück"),
    ]
)
ADDS = [
    ("Ich möchte zwei Pizzen", [("add", "Pizzen", 2, None)]),
    ("Hallo, ich brauche fünf Stück Produkt A", [("add", "Produkt A", 5, "stück")]),
    ("drei Kisten Äpfel", [("add", "Äpfel", 3, "kisten")]),
    ("4 Flaschen Wasser", [("add", "Wasser", 4, "flaschen")]),
    ("ein Dutzend Eier", [("add", "Eier", 12, None)]),
    ("ein halbes Dutzend Brötchen", [("add", "Brötchen", 6, None)]),
    ("eine Brezel", [("add", "Brezel", 1, None)]),
    ("sechs Dosen Cola bitte", [("add", "Cola", 6, "dosen")]),
    ("sieben Scheiben Käse", [("add", "Käse", 7, "scheiben")]),
    ("acht Packungen Nudeln", [("add", "Nudeln", 8, "packungen")]),
    ("neun Berliner", [("add", "Berliner", 9, None)]),
    ("zehn Tüten Chips", [("add", "Chips", 10, "tüten")]),
    ("elf Bratwürste", [("add", "Bratwürste", 11, None)]),
    ("zwölf Rosen", [("add", "Rosen", 12, None)]),
    ("zwanzig Stück Kuchen", [("add", "Kuchen", 20, "stück")]),
    ("2 Kilo Kartoffeln", [("add", "Kartoffeln", 2, "kilo")]),
    ("3 x Schnitzel", [("add", "Schnitzel", 3, None)]),
    (
        "zwei Kaffee und drei Croissants",
        [("add", "Kaffee", 2, None), ("add", "Croissants", 3, None)],
    ),
    ("vier Laugenstangen für morgen", [("add", "Laugenstangen", 4, None)]),
    ("1,5 Kilo Hackfleisch", [("add", "Hackfleisch", 1.5, "kilo")]),
    ("fünfzehn Bier danke", [("add", "Bier", 15, None)]),
]
CHANGES = [
    ("lieber 3", [("set_quantity", "Produkt A", 3, None)]),
    ("Ändere es auf drei Stück", [("set_quantity", "Produkt A", 3, "stück")]),
    ("doch lieber vier", [("set_quantity", "Produkt A", 4, None)]),
    ("eigentlich 6", [("set_quantity", "Produkt A", 6, None)]),
    ("ändere die Äpfel auf 5", [("set_quantity", "Äpfel", 5, None)]),
    ("entferne die Äpfel", [("remove", "Äpfel", None, None)]),
    ("Bitte entferne die Äpfel aus meiner Bestellung", [("remove", "Äpfel", None, None)]),
    ("streiche das Produkt A", [("remove", "Produkt A", None, None)]),
    ("keine Äpfel mehr", [("remove", "Äpfel", None, None)]),
    ("und zwei Flaschen Milch", [("add", "Milch", 2, "flaschen")]),
]
