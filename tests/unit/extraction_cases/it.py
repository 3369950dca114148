"""Italian: numbers in words, "di"/"d'" connectors, changes ("facciamo 3", "meglio 4") and
removals ("togli")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="mele", quantity=2, unit="casse"),
        OrderItem(name="Prodotto A", quantity=5, unit="pezzi"),
    ]
)
ADDS = [
    ("Vorrei due pizze margherita", [("add", "pizze margherita", 2, None)]),
    ("Buongiorno, mi servono cinque pezzi del Prodotto A", [("add", "Prodotto A", 5, "pezzi")]),
    ("tre casse di mele", [("add", "mele", 3, "casse")]),
    ("4 bottiglie d'acqua", [("add", "acqua", 4, "bottiglie")]),
    ("una dozzina di uova", [("add", "uova", 12, None)]),
    ("mezza dozzina di cornetti", [("add", "cornetti", 6, None)]),
    ("un tiramisù", [("add", "tiramisù", 1, None)]),
    ("sei arancini per favore", [("add", "arancini", 6, None)]),
    ("sette lattine di aranciata", [("add", "aranciata", 7, "lattine")]),
    ("otto fette di prosciutto", [("add", "prosciutto", 8, "fette")]),
    ("nove cannoli", [("add", "cannoli", 9, None)]),
    ("dieci pacchi di pasta", [("add", "pasta", 10, "pacchi")]),
    ("undici panini", [("add", "panini", 11, None)]),
    ("dodici rose", [("add", "rose", 12, None)]),
    ("venti supplì", [("add", "supplì", 20, None)]),
    ("2 chili di patate", [("add", "patate", 2, "chili")]),
    ("3 x lasagne", [("add", "lasagne", 3, None)]),
    ("due caffè e tre brioche", [("add", "caffè", 2, None), ("add", "brioche", 3, None)]),
    ("quattro focacce per domani", [("add", "focacce", 4, None)]),
    ("1,5 chili di formaggio", [("add", "formaggio", 1.5, "chili")]),
    ("quindici birre grazie", [("add", "birre", 15, None)]),
]
CHANGES = [
    ("facciamo 3", [("set_quantity", "Prodotto A", 3, None)]),
    ("Facciamo tre scatole invece", [("set_quantity", "Prodotto A", 3, "scatole")]),
    ("meglio quattro", [("set_quantity", "Prodotto A", 4, None)]),
    ("anzi 6", [("set_quantity", "Prodotto A", 6, None)]),
    ("cambia le mele a 5", [("set_quantity", "mele", 5, None)]),
    ("togli le mele", [("remove", "mele", None, None)]),
    ("Togli le mele dal mio ordine", [("remove", "mele", None, None)]),
    ("rimuovi il Prodotto A", [("remove", "Prodotto A", None, None)]),
    ("non voglio più le mele", [("remove", "mele", None, None)]),
    ("e due bottiglie di latte", [("add", "latte", 2, "bottiglie")]),
]
