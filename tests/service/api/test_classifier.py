"""A 3-class model served for real (iris): class probabilities, labels and live metrics."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score, f1_score

from tests.helpers.bundles import make_bundle
from tests.helpers.paths import IRIS_SCHEMA
from tests.helpers.servers import FEEDBACK_AUTH, Server, start_server, stop_server


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("iris")
    bundle = make_bundle(root / "champion", version="1", schema_file=IRIS_SCHEMA)
    running = start_server(root, bundle)
    yield running
    stop_server(running)


def flowers(*rows: int) -> list[dict[str, float]]:
    iris = load_iris(as_frame=True).frame
    features = [c for c in iris.columns if c != "target"]
    return [{name: float(iris.iloc[row][name]) for name in features} for row in rows]


SETOSA, VERSICOLOR, VIRGINICA = 0, 60, 120  # rows of iris whose species are 0, 1, 2


def gauge(text: str, metric: str) -> float:
    pattern = rf'^mloop_live_error\{{metric="{metric}",model_version="1"\}} (\S+)$'
    match = re.search(pattern, text, re.M)
    assert match, f"no live {metric} in /metrics"
    return float(match.group(1))


def test_answers_carry_class_probabilities_in_the_bundles_class_order(
    iris_server: Server,
) -> None:
    with iris_server.client() as client:
        classes = client.get("/model").json()["classes"]
        single = client.post("/predict", json=flowers(VIRGINICA)[0]).json()
        batch = client.post("/predict", json=flowers(SETOSA, VERSICOLOR, VIRGINICA)).json()
    assert classes == [0, 1, 2]
    assert set(single) == {"id", "prediction", "probabilities", "model_version"}
    assert len(single["probabilities"]) == 3 and math.isclose(
        sum(single["probabilities"]), 1, rel_tol=1e-5
    )
    assert single["prediction"] == classes[int(np.argmax(single["probabilities"]))] == 2
    assert len(batch["probabilities"]) == len(batch["predictions"]) == 3
    for label, proba in zip(batch["predictions"], batch["probabilities"]):
        assert label == classes[int(np.argmax(proba))]
        assert math.isclose(sum(proba), 1, rel_tol=1e-5)
    assert batch["predictions"] == [0, 1, 2]
    assert batch["probabilities"][2] == pytest.approx(single["probabilities"])


def test_live_metrics_are_macro_averaged_over_three_classes(iris_server: Server) -> None:
    with iris_server.client(headers=FEEDBACK_AUTH) as client:
        answer = client.post("/predict", json=flowers(SETOSA, VERSICOLOR, VIRGINICA)).json()
        ids, predicted = answer["ids"], answer["predictions"]
        # a correct class-0 label first: one class seen, which is no binary task
        first = client.post("/feedback", json={"items": [{"id": ids[0], "actual": 0}]})
        assert first.status_code == 200 and first.json()["accepted"] == 1
        assert gauge(client.get("/metrics").text, "f1") == 1.0
        # a class-2 label (and a wrong class-1 one): answered, and scored as three classes
        rest = client.post(
            "/feedback",
            json={"items": [{"id": ids[2], "actual": 2}, {"id": ids[1], "actual": 2}]},
        )
        assert rest.status_code == 200, rest.text
        assert rest.json()["accepted"] == 2
        text = client.get("/metrics").text
    actual = [0, 2, 2]  # of ids[0], ids[1], ids[2]
    expected_f1 = f1_score(actual, predicted, average="macro", zero_division=0)
    assert predicted == [0, 1, 2] and expected_f1 == pytest.approx(5 / 9)
    assert gauge(text, "f1") == pytest.approx(expected_f1)
    assert gauge(text, "accuracy") == pytest.approx(accuracy_score(actual, predicted))


@pytest.mark.parametrize(
    ("actual", "fragment"),
    [(3, "not one of the model's classes [0, 1, 2]"), (1.0, "Expected `int`, got `float`"),
     (True, "Expected `int`, got `bool`"), ("1", "Expected `int`, got `str`")],
    ids=["unknown-class", "float", "bool", "text"],
)  # fmt: skip
def test_a_label_outside_the_classes_is_a_422(
    iris_server: Server, actual: object, fragment: str
) -> None:
    with iris_server.client(headers=FEEDBACK_AUTH) as client:
        prediction = client.post("/predict", json=flowers(SETOSA)[0]).json()["id"]
        response = client.post("/feedback", json={"items": [{"id": prediction, "actual": actual}]})
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"][0]["msg"]
