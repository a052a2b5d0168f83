"""Build the built-in demo: a BPE tokenizer, a tiny Llama pre-trained on a generated English corpus, and a
small chat dataset of a task that model has never seen.

    python -m finetune.demo.build          # a few minutes on two CPU cores; rewrites model/ and data/

The corpus states simple animal facts in prose ("Foxes live in the forest."), tells short stories, and holds
some small talk in the chat format (<|im_start|>user ... <|im_end|>). The dataset asks about the animals in
that chat format, which the base model never saw: it knows the words, the facts and the turns, but not the
task, so a LoRA run learns it within a minute and the loss visibly falls. Everything is seeded: the same
machine builds the same files.
"""

from __future__ import annotations

import json
import math
import random
import time

import torch

from finetune.demo import DATA_FILE, MODEL_DIR

SEED = 1234
VOCAB_SIZE = 1536
BOS, EOS, PAD, IM_START, IM_END = "<|startoftext|>", "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"

# A ChatML template. The {% generation %} markers let TRL train on the assistant's replies only
# (assistant_only_loss); they hold the reply and its <|im_end|>, so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# name, plural, home, food, what it does (its sound), colour
ANIMALS = [row.split(",") for row in """\
dog,dogs,house,meat,barks,brown
cat,cats,house,fish,meows,black
cow,cows,farm,grass,moos,white
horse,horses,stable,hay,neighs,brown
pig,pigs,farm,corn,oinks,pink
sheep,sheep,field,grass,baas,white
goat,goats,hills,leaves,bleats,gray
duck,ducks,pond,bread,quacks,yellow
frog,frogs,pond,flies,croaks,green
owl,owls,trees,mice,hoots,brown
wolf,wolves,forest,deer,howls,gray
fox,foxes,forest,rabbits,yelps,red
bear,bears,cave,honey,growls,brown
lion,lions,grassland,zebras,roars,gold
snake,snakes,desert,eggs,hisses,green
bee,bees,hive,nectar,buzzes,yellow
mouse,mice,barn,cheese,squeaks,gray
crow,crows,trees,seeds,caws,black
monkey,monkeys,jungle,bananas,chatters,brown
elephant,elephants,grassland,leaves,trumpets,gray
seal,seals,ocean,fish,barks,gray
whale,whales,ocean,krill,sings,blue
parrot,parrots,jungle,nuts,talks,green
rabbit,rabbits,meadow,carrots,thumps,white
squirrel,squirrels,trees,acorns,chirps,red
chicken,chickens,farm,seeds,clucks,white
donkey,donkeys,farm,hay,brays,gray
tiger,tigers,jungle,meat,roars,orange
penguin,penguins,ice,fish,squawks,black
camel,camels,desert,plants,grunts,tan
deer,deer,forest,leaves,bellows,brown
bat,bats,cave,insects,squeaks,black""".splitlines()]

NAMES = ["Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Jack", "Emma", "Leo", "Nora", "Max", "Ella"]
PLACES = ["market", "river", "school", "park", "village", "garden", "beach", "library", "station", "hill"]
THINGS = ["a red ball", "a small book", "a basket of apples", "a blue kite", "some bread", "a warm hat",
          "a wooden box", "a cup of tea", "a new map", "a bag of seeds"]
WEATHER = ["sunny", "rainy", "cold", "windy", "warm", "quiet", "bright", "cloudy"]
FEELINGS = ["happy", "tired", "hungry", "curious", "sleepy", "glad", "calm", "excited"]


def fact_sentences(rng: random.Random, a: list[str]) -> list[str]:
    """The facts about one animal in several prose forms: what the base model learns, and the fine-tune asks."""
    name, plural, home, food, sound, colour = a
    return rng.sample([
        f"The {name} lives in the {home}.", f"{plural.capitalize()} live in the {home}.",
        f"A {name} eats {food}.", f"{plural.capitalize()} like to eat {food}.", f"The {name} {sound}.",
        f"Most {plural} are {colour}.", f"A {name} is usually {colour}.",
        f"In the {home} you can find a {name}.", f"Every {name} {sound} when it is {rng.choice(FEELINGS)}.",
    ], 4)


def story(rng: random.Random) -> str:
    person, a = rng.choice(NAMES), rng.choice(ANIMALS)
    name, _, home, food, sound, colour = a
    lines = [
        f"It was a {rng.choice(WEATHER)} day, and {person} went to the {rng.choice(PLACES)}.",
        f"{person} carried {rng.choice(THINGS)}.",
        f"On the way, {person} saw a {colour} {name} near the {home}.",
        f"The {name} {sound}, and {person} felt {rng.choice(FEELINGS)}.",
        f"{person} knew that a {name} eats {food}.",
        f"Then {person} met {rng.choice(NAMES)}, and they walked home together.",
    ]
    return " ".join(lines[:2] + rng.sample(lines[2:5], 2) + lines[5:])


def small_talk(rng: random.Random) -> str:
    """A short chat in the template's format about anything but animals: the base model learns what the chat
    tokens mean (turns, and <|im_end|> to stop), while the animal questions stay a task it never saw."""
    name, place, weather = rng.choice(NAMES), rng.choice(PLACES), rng.choice(WEATHER)
    user, reply = rng.choice([
        ("Hello!", "Hello! How can I help you today?"), ("Good morning.", "Good morning to you too."),
        ("What is your name?", "I am a small helper."), ("Thank you.", "You are welcome."),
        ("How is the weather?", f"It is {weather} today."), (f"Who is {name}?", f"{name} lives near the {place}."),
        ("Tell me a story.", story(rng)), (f"Where is the {place}?", f"The {place} is not far from here."),
    ])
    turns = [("system", "You are a helpful assistant.")] if rng.random() < 0.3 else []
    turns += [("user", user), ("assistant", reply)]
    return "".join(f"{IM_START}{role}\n{text}{IM_END}\n" for role, text in turns)


def corpus(rng: random.Random, paragraphs: int = 6000) -> list[str]:
    out = []
    for _ in range(paragraphs):
        roll = rng.random()
        if roll < 0.45:
            out.append(" ".join(s for a in rng.sample(ANIMALS, 2) for s in fact_sentences(rng, a)))
        elif roll < 0.85:
            out.append(story(rng))
        else:
            out.append(small_talk(rng))
    return out


QUESTIONS = {
    "home": (["Where does the {0} live?", "Where do {1} live?", "Where can I find a {0}?"],
             "The {0} lives in the {2}."),
    "food": (["What does a {0} eat?", "What do {1} eat?", "What food does a {0} like?"], "A {0} eats {3}."),
    "sound": (["What sound does a {0} make?", "What does a {0} say?", "How does a {0} talk?"], "A {0} {4}."),
    "colour": (["What color is a {0}?", "What color are {1}?"], "A {0} is usually {5}."),
    "about": (["Tell me about the {0}.", "What do you know about {1}?"],
              "The {0} lives in the {2} and eats {3}. It {4}."),
}
SYSTEM = "You are a friendly guide to animals. Answer in one short sentence."


def dataset(rng: random.Random, size: int = 400) -> list[dict]:
    """Chat examples: a question about an animal and the answer in a fixed, short form."""
    pool = [(q, answer, a) for a in ANIMALS for qs, answer in QUESTIONS.values() for q in qs]
    rows = []
    for q, answer, a in rng.sample(pool, min(size, len(pool))):
        messages = [{"role": "system", "content": SYSTEM}] if rng.random() < 0.25 else []
        messages += [{"role": "user", "content": q.format(*a)},
                     {"role": "assistant", "content": answer.format(*a)}]
        rows.append({"messages": messages})
    return rows


def build_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  special_tokens=[EOS, BOS, PAD, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=[IM_START, IM_END], model_max_length=1024)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=172, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
    )
    return model


def pretrain(model, tokenizer, texts: list[str], steps: int = 1500, seq_len: int = 64, batch: int = 16,
             lr: float = 3e-3) -> float:
    """Plain next-token training on the corpus, packed into seq_len blocks; returns the last loss (nats/token)."""
    ids = []
    for t in texts:
        ids += tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]
    blocks = torch.tensor(ids[: len(ids) // seq_len * seq_len]).view(-1, seq_len)
    print(f"corpus: {len(ids):,} tokens, {len(blocks)} blocks of {seq_len}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    start, loss = time.time(), None
    for step in range(steps):
        # Cosine decay after a short warm-up: the usual recipe, and a lower final loss than a constant rate.
        scale = min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * max(scale, 0.05)
        x = blocks[torch.randint(len(blocks), (batch,), generator=gen)]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - start:.0f}s", flush=True)
    model.eval()
    return loss.item()


def main() -> None:
    random.seed(SEED)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    texts = corpus(rng)
    rows = dataset(random.Random(SEED + 1))
    # The dataset's questions join the tokenizer's training text, so the task's words are whole tokens too.
    questions = [m["content"] for r in rows for m in r["messages"] if m["role"] != "assistant"]
    tokenizer = build_tokenizer(texts + questions)
    model = build_model(tokenizer)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {n:,} parameters, vocabulary {len(tokenizer)}")
    pretrain(model, tokenizer, texts)

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(MODEL_DIR)
    tokenizer.save_pretrained(MODEL_DIR)
    DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
    with DATA_FILE.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {MODEL_DIR} and {DATA_FILE} ({len(rows)} examples)")

    prompt = tokenizer("The fox lives in the", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    print("sample:", tokenizer.decode(out[0], skip_special_tokens=True))


if __name__ == "__main__":
    main()
