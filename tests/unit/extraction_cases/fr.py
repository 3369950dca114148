"""French: numbers in words ("dix-huit"), "d'" before a vowel, changes ("finalement 3",
"mets-en 2") and removals ("enlève")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="pommes", quantity=2, unit="caisses"),
        OrderItem(name="Produit A", quantity=5, unit="unités"),
    ]
)
ADDS = [
    ("Je voudrais deux pizzas", [("add", "pizzas", 2, None)]),
    ("Bonjour, il me faut cinq unités du Produit A", [("add", "Produit A", 5, "unités")]),
    ("trois caisses de pommes", [("add", "pommes", 3, "caisses")]),
    ("4 bouteilles d'eau", [("add", "eau", 4, "bouteilles")]),
    ("une douzaine d'œufs", [("add", "œufs", 12, None)]),
    ("une demi-douzaine de croissants", [("add", "croissants", 6, None)]),
    ("un croque-monsieur", [("add", "croque-monsieur", 1, None)]),
    ("six baguettes s'il vous plaît", [("add", "baguettes", 6, None)]),
    ("sept canettes de soda", [("add", "soda", 7, "canettes")]),
    ("huit tranches de jambon", [("add", "jambon", 8, "tranches")]),
    ("neuf pains au chocolat", [("add", "pains au chocolat", 9, None)]),
    ("dix paquets de chips", [("add", "chips", 10, "paquets")]),
    ("onze macarons", [("add", "macarons", 11, None)]),
    ("dix-huit roses", [("add", "roses", 18, None)]),
    ("vingt samoussas", [("add", "samoussas", 20, None)]),
    ("2 kilos de pommes de terre", [("add", "pommes de terre", 2, "kilos")]),
    ("3 x quiche lorraine", [("add", "quiche lorraine", 3, None)]),
    ("deux cafés et trois croissants", [("add", "cafés", 2, None), ("add", "croissants", 3, None)]),
    ("quatre crêpes pour demain", [("add", "crêpes", 4, None)]),
    ("1,5 kilos de fromage", [("add", "fromage", 1.5, "kilos")]),
    ("douze huîtres merci", [("add", "huîtres", 12, None)]),
]
CHANGES = [
    ("finalement 3", [("set_quantity", "Produit A", 3, None)]),
    ("Finalement mettez-en trois", [("set_quantity", "Produit A", 3, None)]),
    ("plutôt 4", [("set_quantity", "Produit A", 4, None)]),
    ("en fait 6 unités", [("set_quantity", "Produit A", 6, "unités")]),
    ("change les pommes à 5", [("set_quantity", "pommes", 5, None)]),
    ("enlève les pommes", [("remove", "pommes", None, None)]),
    ("Enlève les pommes de ma commande", [("remove", "pommes", None, None)]),
    ("supprime le Produit A", [("remove", "Produit A", None, None)]),
    ("je ne veux plus de pommes", [("remove", "pommes", None, None)]),
    ("et deux bouteilles de lait", [("add", "lait", 2, "bouteilles")]),
]
