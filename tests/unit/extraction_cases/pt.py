"""Portuguese: "Quero 3 caixas de maçãs" is 3 x "maçãs" in "caixas" (the unit stays a unit, as
English "3 boxes of apples"); changes ("melhor 3") and removals ("tire")."""

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER = OrderDetails(
    items=[
        OrderItem(name="maçãs", quantity=3, unit="caixas"),
        OrderItem(name="Produto A", quantity=5, unit="unidades"),
    ]
)
ADDS = [
    ("Quero 3 caixas de maçãs", [("add", "maçãs", 3, "caixas")]),
    ("Olá, preciso de cinco unidades do Produto A", [("add", "Produto A", 5, "unidades")]),
    ("duas pizzas por favor", [("add", "pizzas", 2, None)]),
    ("um pão de queijo", [("add", "pão de queijo", 1, None)]),
    ("uma dúzia de ovos", [("add", "ovos", 12, None)]),
    ("meia dúzia de pastéis", [("add", "pastéis", 6, None)]),
    ("quatro garrafas de água", [("add", "água", 4, "garrafas")]),
    ("2 quilos de arroz", [("add", "arroz", 2, "quilos")]),
    ("três latas de guaraná", [("add", "guaraná", 3, "latas")]),
    ("seis coxinhas", [("add", "coxinhas", 6, None)]),
    ("sete pacotes de biscoito", [("add", "biscoito", 7, "pacotes")]),
    ("oito fatias de pizza", [("add", "pizza", 8, "fatias")]),
    ("nove sacos de gelo", [("add", "gelo", 9, "sacos")]),
    ("dez brigadeiros", [("add", "brigadeiros", 10, None)]),
    ("quero doze rosas", [("add", "rosas", 12, None)]),
    ("vinte pães franceses", [("add", "pães franceses", 20, None)]),
    ("dois sucos de laranja", [("add", "sucos de laranja", 2, None)]),
    ("3 x açaí", [("add", "açaí", 3, None)]),
    ("Quero dois cafés e três pães", [("add", "cafés", 2, None), ("add", "pães", 3, None)]),
    ("quinze esfihas para hoje", [("add", "esfihas", 15, None)]),
    ("0,5 quilos de queijo", [("add", "queijo", 0.5, "quilos")]),
]
CHANGES = [
    ("melhor 4", [("set_quantity", "Produto A", 4, None)]),
    ("muda para duas unidades", [("set_quantity", "Produto A", 2, "unidades")]),
    ("pode mudar para quatro unidades?", [("set_quantity", "Produto A", 4, "unidades")]),
    ("muda as maçãs para 6", [("set_quantity", "maçãs", 6, None)]),
    ("na verdade 7", [("set_quantity", "Produto A", 7, None)]),
    ("tire as maçãs", [("remove", "maçãs", None, None)]),
    ("Tire as maçãs do meu pedido, por favor", [("remove", "maçãs", None, None)]),
    ("não quero mais o Produto A", [("remove", "Produto A", None, None)]),
    ("remove o Produto A", [("remove", "Produto A", None, None)]),
    ("mais duas caixas de bananas", [("add", "bananas", 2, "caixas")]),
]
